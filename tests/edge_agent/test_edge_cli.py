"""``python -m edge_agent --config FILE`` as a real process: stdin scanner, signals, crash."""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from edge_helpers import Collector, broker_url, new_prefix, retained_status, run_native

from schemas import verify

KEY = "00112233445566778899aabbccddeeff"


def write_config(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'''
device_id = "cli-edge"
room_id = "room-9"
alg = "hmac-sha256"
signing_key = "{KEY}"
mqtt_url = "{broker_url()}"
topic_prefix = "{prefix}"
outbox = "outbox.sqlite"
heartbeat_interval_s = 30

[[sources]]
type = "qr_lines"
path = "-"
''')
    return path


async def spawn(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "--config", str(config), "--log-level", "DEBUG",
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=config.parent)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stdin_scans_are_published_and_a_signal_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    prefix = new_prefix()
    config = write_config(tmp_path, prefix)

    async def main() -> None:
        async with Collector(prefix) as col:
            proc = await spawn(config)
            try:
                await col.wait_for(lambda: [s.state for s in col.statuses("cli-edge")] == ["online"], 10)
                assert proc.stdin is not None
                proc.stdin.write(b"CH1.s-1.1.aaaaaaaaaaaaaaaa\r\n\nsecond\n")
                await proc.stdin.drain()
                await col.wait_for(lambda: len(col.of_kind("qr_scan")) == 2)
                assert [e.body.text for e in col.of_kind("qr_scan")] == ["CH1.s-1.1.aaaaaaaaaaaaaaaa", "second"]
                for frame, _ in col.events():
                    verify(frame, bytes.fromhex(KEY))
                proc.send_signal(sig)
                assert await asyncio.wait_for(proc.wait(), 10) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
            await col.wait_for(lambda: len(col.statuses("cli-edge")) == 2)
            assert col.statuses("cli-edge")[-1].reason == "shutdown"

    run_native(main())


def test_a_killed_agent_leaves_its_last_will(tmp_path: Path) -> None:
    prefix = new_prefix()
    config = write_config(tmp_path, prefix)

    async def main() -> None:
        async with Collector(prefix) as col:
            proc = await spawn(config)
            await col.wait_for(lambda: [s.state for s in col.statuses("cli-edge")] == ["online"], 10)
            proc.kill()  # SIGKILL: no clean disconnect; the kernel closes the socket
            await proc.wait()
            await col.wait_for(lambda: len(col.statuses("cli-edge")) == 2)
            status, retained = await retained_status(prefix, "cli-edge")
            assert (status.state, status.reason, retained) == ("offline", "connection lost", True)

    run_native(main())
