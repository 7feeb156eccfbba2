"""Generic actors and OTP-style supervision on trio.

Actors handle one message at a time from a bounded mailbox; supervisors
start them (and other supervisors), restart them per policy with backoff,
and stop them in reverse start order. Everything runs in the trio run that
called :meth:`Supervisor.run`; nothing here is thread-safe.

This package depends on nothing but the standard library and trio.
"""

from ._actor import Actor, ActorRef, Timer
from ._errors import (
    ActorCrashed,
    ActorError,
    ActorStopped,
    AskTimeout,
    ChildExists,
    MailboxFull,
    SupervisorEscalation,
)
from ._mailbox import Overflow
from ._spec import ChildSpec, Restart, Strategy
from ._supervisor import Supervisor, SupervisorObserver

__all__ = [
    "Actor",
    "ActorRef",
    "Timer",
    "ChildSpec",
    "Restart",
    "Strategy",
    "Overflow",
    "Supervisor",
    "SupervisorObserver",
    "ActorError",
    "ActorStopped",
    "ActorCrashed",
    "AskTimeout",
    "MailboxFull",
    "ChildExists",
    "SupervisorEscalation",
]

# Present the public classes as living here, as trio does, so reprs and
# docs point at the public module rather than its private parts.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _name, _obj
