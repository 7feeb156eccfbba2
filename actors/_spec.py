"""Restart policies, strategies and child specifications."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

from ._mailbox import Overflow

if TYPE_CHECKING:
    from ._actor import Actor
    from ._supervisor import Supervisor

__all__ = ["Restart", "Strategy", "ChildSpec"]


class Restart(enum.Enum):
    """When a child that ended on its own is started again (OTP semantics)."""

    #: Always: after a crash and after a normal exit.
    PERMANENT = "permanent"
    #: Only after a crash; a normal exit (``Actor.stop()``) removes it.
    TRANSIENT = "transient"
    #: Never, not even when a sibling's crash stops it (ONE_FOR_ALL,
    #: REST_FOR_ONE); any exit removes it.
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them must be restarted."""

    #: Only that child.
    ONE_FOR_ONE = "one_for_one"
    #: All children: the others are stopped in reverse start order, then all
    #: are started again in start order.
    ONE_FOR_ALL = "one_for_all"
    #: That child and every child started after it: those are stopped in
    #: reverse start order, then all of them started again in start order.
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    ``start`` is a zero-argument factory returning a fresh :class:`Actor` or
    :class:`Supervisor`; it is called on every (re)start, in the supervisor's
    task, and must not block. ``shutdown_timeout`` bounds an orderly stop
    (finishing the current message plus ``stopping()``, or a child
    supervisor's whole shutdown) before the child is cancelled.
    ``mailbox_size`` and ``overflow`` configure an actor child's mailbox and
    are ignored for a child supervisor.
    """

    id: str
    start: Callable[[], Union["Actor", "Supervisor"]]
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0
    mailbox_size: int = 64
    overflow: Overflow = Overflow.BLOCK

    def __post_init__(self) -> None:
        if not callable(self.start):
            raise TypeError("ChildSpec.start must be a zero-argument callable")
        if self.mailbox_size < 1:
            raise ValueError("ChildSpec.mailbox_size must be at least 1")
        if self.shutdown_timeout < 0:
            raise ValueError("ChildSpec.shutdown_timeout must not be negative")
