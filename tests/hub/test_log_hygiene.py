"""Log hygiene (issue 12 §6): wire text cannot forge a log line in the hub's log."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
import time

from support.hub_helpers import eventually

from hub.core.log_format import CONTINUATION, EscapingFormatter, escape_controls
from schemas import DeviceStatus, Topics, encode_status

FORGED = "x\nCRITICAL hub.auth fake"


def _formatted(*args: object, exc: bool = False) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test.log_hygiene")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if exc:
            try:
                raise ValueError(args[0])
            except ValueError:
                logger.exception("failed on %s", args[0])
        else:
            logger.warning(*args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_newline_in_an_argument_or_the_message_stays_on_one_line():
    out = _formatted("status reason %s", FORGED)
    assert out == "WARNING test.log_hygiene: status reason x\\nCRITICAL hub.auth fake\n"
    out = _formatted("topic " + FORGED)  # wire text in the message itself (no args)
    assert out.count("\n") == 1 and "\\nCRITICAL" in out


def test_escapes_name_the_character():
    assert escape_controls("a\r\tb\x1b[0m\x00\x85\u2028") == "a\\r\\tb\\x1b[0m\\x00\\x85\\u2028"
    assert escape_controls("Störung ⚡") == "Störung ⚡"


def test_a_traceback_keeps_its_lines_but_each_is_marked_as_part_of_the_record():
    lines = _formatted(FORGED, exc=True).splitlines()
    assert lines[0] == "ERROR test.log_hygiene: failed on x\\nCRITICAL hub.auth fake"
    assert len(lines) > 2 and all(line.startswith(CONTINUATION) for line in lines[1:])
    assert not any(line.startswith("CRITICAL") for line in lines)


def test_the_hub_cli_installs_the_escaping_formatter():
    """``campushub``'s own logging setup, in a fresh interpreter (pytest has its own handlers)."""
    code = (
        "import logging, sys\n"
        "import hub.app.cli as cli\n"
        "def probe(args, settings):\n"
        "    logging.getLogger('hub.pipeline.ingress').warning('status reason %s', sys.argv[1])\n"
        "    return 0\n"
        "cli._migrate = probe\n"
        "sys.exit(cli.main(['migrate']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, FORGED], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].endswith("WARNING hub.pipeline.ingress: status reason x\\nCRITICAL hub.auth fake")


async def test_a_status_reason_with_a_newline_through_the_hub_writes_no_second_line(
    hub, hub_settings, hub_campus, test_db, publisher,
):
    """The finding itself, through the broker: the signed status is refused at the schema (its reason never
    reaches the device actor, its alarm or the log), and no line of the hub's log starts with the forged text.
    (Mosquitto itself refuses control characters in topics: it drops a client publishing one.)"""
    device = hub_campus.devices[0]
    topic = Topics(hub_settings.topic_prefix).status(device.device_id)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        status = DeviceStatus(device.device_id, "offline", int(time.time() * 1000), FORGED)
        await publisher.publish(topic, encode_status(status, device.alg, device.signing_key),
                                qos=1, wait_for_ack=True)
        reasons = await eventually(lambda: _reasons(test_db, topic))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert reasons == ["schema"]
    log = stream.getvalue()
    assert f"route {topic}" in log  # the hub's log was captured
    assert "CRITICAL hub.auth fake" not in log
    assert not [line for line in log.splitlines() if line.startswith("CRITICAL")]


async def _reasons(db, topic: str) -> list[str]:
    return [r["reason"] for r in await db.fetch("SELECT reason FROM rejected_events WHERE topic = $1", topic)]
