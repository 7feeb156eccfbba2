"""How long a real password check takes while N wrong ones are in flight (issue 11, section 5).

Before: every check ran in its own worker thread (trio's default limit, 40
threads), so 64 parallel argon2 computations time-sliced the cores and a real
login waited for all of them. After: at most one check per core runs at once
(``hub.core.passwords.HASHING``); the others queue, and the login limiter
(web/protection.py) stops an account's guesses after 10 failures anyway.

    .venv/bin/python bench/login_contention.py [--parallel 64] [--rounds 3]

Prints, for each mode, the real check's latency (median and worst of the
rounds) and the worst event-loop lateness seen meanwhile. A measurement, not a
test: the figures depend on the machine's cores.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.core.passwords import hash_password, verify_password, verify_password_async  # noqa: E402
from web.errors import WebError  # noqa: E402
from web.protection import Protection  # noqa: E402


async def _unbounded(password_hash: str, password: str) -> bool:
    """What web/auth.py did before: one worker thread per check, nothing else."""
    return await trio.to_thread.run_sync(verify_password, password_hash, password)


def _protected() -> Callable[[str, str], Awaitable[bool]]:
    """What web/auth.py login() does now: the login limiter, one check per address, HASHING."""
    logins = Protection().logins

    async def check(password_hash: str, password: str) -> bool:
        real = password == "the right password"
        username, address = ("alice", "10.0.0.2") if real else ("victim", "10.0.0.66")
        try:
            logins.attempt(username, address)
        except WebError:
            return False  # 429: refused before any hashing
        async with logins.turn(address):
            return await verify_password_async(password_hash, password)

    return check


async def _one_round(check, password_hash: str, parallel: int) -> tuple[float, float]:
    lateness = 0.0
    done = trio.Event()

    async def ticker() -> None:
        nonlocal lateness
        while not done.is_set():
            start = trio.current_time()
            await trio.sleep(0.01)
            lateness = max(lateness, trio.current_time() - start - 0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        for _ in range(parallel):
            nursery.start_soon(check, password_hash, "wrong guess")
        await trio.sleep(0.05)  # the guesses are in flight when the real user arrives
        start = time.perf_counter()
        assert await check(password_hash, "the right password")
        latency = time.perf_counter() - start
        done.set()
    return latency, lateness


async def main(parallel: int, rounds: int) -> None:
    password_hash = hash_password("the right password")
    print(f"{os.cpu_count()} cores, {parallel} parallel wrong checks, {rounds} rounds")
    for name, check in (("before (unbounded threads)", _unbounded),
                        ("HASHING limiter alone", verify_password_async),
                        ("after (login() as it is)", _protected())):
        results = [await _one_round(check, password_hash, parallel) for _ in range(rounds)]
        latencies = [r[0] for r in results]
        print(f"{name:28} real check: median {statistics.median(latencies):.2f} s, worst {max(latencies):.2f} s;"
              f" event loop late by at most {max(r[1] for r in results) * 1000:.0f} ms")
    alone = [await _one_round(verify_password_async, password_hash, 0) for _ in range(rounds)]
    print(f"{'no contention':28} real check: median {statistics.median(r[0] for r in alone):.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.parallel, args.rounds)
