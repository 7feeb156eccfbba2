"""The hub's log format: one record, one line, whatever a message from the wire contains.

A topic, a device id, a status reason or an exception message can come from
anyone who reaches the broker or the web port. Logged as is, a newline in
it starts a line of the attacker's choosing (``CRITICAL hub.auth ...``).
:class:`EscapingFormatter` escapes every control character of the formatted
message (arguments included) and marks each line of a traceback that follows
with ``"  | "``, so no line can start with anything but the format's prefix.

Pure and thread-safe like :class:`logging.Formatter`; :func:`configure_logging`
is called once, by the CLI, before anything logs.
"""
from __future__ import annotations

import logging
import re
from typing import TextIO

#: C0 and C1 control characters (newline, carriage return, escape, ...), DEL, and the Unicode
#: line and paragraph separators, which some log viewers also break lines at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: What starts every line of a record after its first (a traceback's): visibly not a record of its own.
CONTINUATION = "  | "
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as its escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return _CONTROL.sub(_escaped, text)


class EscapingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose records are one line each, tracebacks aside (marked)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return escape_controls(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        # The message part has no newline left; any newline now belongs to a traceback or stack.
        return super().format(record).replace("\n", "\n" + CONTINUATION)


def configure_logging(level: int, stream: TextIO) -> logging.Handler:
    """Log ``level`` and above to ``stream`` through an :class:`EscapingFormatter`.

    As :func:`logging.basicConfig`: does nothing if the root logger already has
    handlers (e.g. under pytest). Returns the handler made.
    """
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    return handler
