"""Exceptions raised by the actor runtime."""

from __future__ import annotations

__all__ = [
    "ActorError",
    "ActorStopped",
    "ActorCrashed",
    "AskTimeout",
    "MailboxFull",
    "ChildExists",
    "SupervisorEscalation",
]


class ActorError(Exception):
    """Base class of every error the actor runtime raises on purpose."""


class ActorStopped(ActorError):
    """The actor is stopped for good: it will never handle this message.

    Raised by :meth:`ActorRef.tell` / :meth:`ActorRef.ask` on a permanently
    stopped actor, delivered to an ``ask`` whose message was still queued (or
    being handled) when the actor was stopped by its supervisor, and raised by
    :meth:`Supervisor.start_child` once the supervisor is shutting down.
    """


class ActorCrashed(ActorError):
    """Handling the asked message raised; ``__cause__`` is the original error.

    The crashed message is not redelivered: the supervisor restarts the actor
    (per its restart policy) and carries on with the next queued message.
    """


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived within the ``timeout`` given to :meth:`ActorRef.ask`.

    The message may still be handled later; its reply is then discarded.
    """


class MailboxFull(ActorError):
    """The mailbox had no room and the overflow policy refuses to wait.

    Raised by ``tell``/``ask`` under :attr:`Overflow.FAIL`, by ``ask`` under
    :attr:`Overflow.DROP_NEWEST`, and delivered to an ``ask`` whose queued
    message was evicted under :attr:`Overflow.DROP_OLDEST`.
    """


class ChildExists(ActorError):
    """:meth:`Supervisor.start_child` was given an id that is already in use."""


class SupervisorEscalation(ActorError):
    """A supervisor gave up: more than ``max_restarts`` restarts in ``within_s``.

    Raised out of :meth:`Supervisor.run` after all its children are stopped.
    ``__cause__`` is the error of the child whose exit tipped it over. A parent
    supervisor treats it as a crash of that child.
    """

    def __init__(self, supervisor: str, child: str, max_restarts: int, within_s: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restarts"
            f" within {within_s}s (last exit: child {child!r})"
        )
        self.supervisor = supervisor
        self.child = child
