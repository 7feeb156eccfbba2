"""``campushub edge-agent --config FILE``: run one edge agent until Ctrl-C / SIGTERM.

Exit codes: 0 after a clean stop, 1 on an unexpected failure, 2 for usage or
configuration errors (bad flags, unreadable/invalid TOML, an outbox that
cannot be opened or belongs to another device).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sqlite3
import sys

from .agent import EdgeAgent
from .config import ConfigError, load_config
from .enrolment import KeyStoreError
from .outbox import OutboxError

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="campushub edge-agent",
        description="Run the classroom edge agent: read devices, sign events, keep them in a "
                    "durable outbox and publish them to the CampusHub MQTT broker.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="agent configuration (TOML)")
    p.add_argument("--rotate-storage-key", action="store_true",
                   help="re-encrypt the enrolment data kept on this PC under a fresh AES-256-GCM key, "
                        "delete the old key, and exit (run it while the agent is stopped)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="logging level (default: INFO)")
    return p


async def _run(agent: EdgeAgent) -> None:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None

    def on_signal() -> None:
        # First signal: clean shutdown (drain, offline status). Second: stop now.
        if agent._stop_requested:  # noqa: SLF001 - same package
            main_task.cancel()
        else:
            log.info("stopping (signal again to stop immediately)")
            agent.stop()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        await agent.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        agent.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (see module docstring)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or usage error (2)
        return int(exc.code or 0)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"campushub edge-agent: config error: {exc}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:  # the hub CLI may have configured logging already
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        logging.getLogger().setLevel(args.log_level)
    try:
        agent = EdgeAgent(config)
    except (OutboxError, OSError, sqlite3.Error) as exc:
        print(f"campushub edge-agent: cannot open outbox {config.outbox_path} or state "
              f"{config.state_file}: {exc}", file=sys.stderr)
        return 2
    except KeyStoreError as exc:
        print(f"campushub edge-agent: {exc}", file=sys.stderr)
        return 2
    if args.rotate_storage_key:
        try:
            kid = agent.enrolment.rotate_key()
        finally:
            agent.close()
        print(f"campushub edge-agent: enrolment data re-encrypted under key {kid}", file=sys.stderr)
        return 0
    try:
        asyncio.run(_run(agent))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    except Exception:
        log.exception("edge agent failed")
        return 1
    return 0
