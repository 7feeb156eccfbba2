"""How fast one core decodes, validates and authenticates uplink frames.

Prints messages/s for: the baseline (schema-less MessagePack decode of the
same bytes), full decode + validation (``schemas.decode_frame``), and decode
+ validation + HMAC verification (what the ingress does per message), each
also as a ratio to the baseline measured in the same process.

    .venv/bin/python bench/wire_decode.py [--messages 200000] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import msgspec

from schemas import (
    Heartbeat,
    HeartbeatEvent,
    QrScan,
    QrScanEvent,
    SensorReading,
    SensorReadingEvent,
    decode_frame,
    encode_event,
    new_event_id,
    verify,
)


def corpus(n_distinct: int = 1000) -> tuple[list[bytes], bytes]:
    key = os.urandom(32)
    now = int(time.time() * 1000)
    frames = []
    for i in range(n_distinct):
        common = dict(v=1, id=new_event_id(), device=f"dev-room-{i % 200:03d}", ts=now + i, seq=i)
        if i % 3 == 0:
            event = QrScanEvent(**common, body=QrScan(text=f"CH1.stu-{i:04d}.{now // 15000}.abcdefghijklmnop"))
        elif i % 3 == 1:
            event = SensorReadingEvent(**common, body=SensorReading(metric="temperature", value=21.5, unit="C"))
        else:
            event = HeartbeatEvent(**common, body=Heartbeat(uptime_s=i, firmware="edge/0.1.0", outbox_depth=0))
        frames.append(encode_event(event, "hmac-sha256", key))
    return frames, key


def rate(work, frames: list[bytes], total: int) -> float:
    n = len(frames)
    started = time.perf_counter()
    for i in range(total):
        work(frames[i % n])
    return total / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    frames, key = corpus()
    plain = msgspec.msgpack.Decoder()

    def baseline(data: bytes) -> None:
        frame = plain.decode(data)
        plain.decode(frame[0])

    def validate(data: bytes) -> None:
        decode_frame(data)

    def authenticate(data: bytes) -> None:
        frame, _ = decode_frame(data)
        verify(frame, key)

    results = {}
    for name, work in (("baseline_untyped_decode", baseline), ("decode_validate", validate),
                       ("decode_validate_hmac", authenticate)):
        rate(work, frames, min(20_000, args.messages))  # warm up
        results[name] = rate(work, frames, args.messages)
        print(f"  {name}: {results[name]:,.0f} msg/s", file=sys.stderr)
    base = results["baseline_untyped_decode"]
    if args.json:
        print(json.dumps({k: {"msg_per_s": round(v), "ratio_to_baseline": round(v / base, 3)}
                          for k, v in results.items()}))
    else:
        print(f"{'path':<26} {'msg/s':>12} {'x baseline':>11}")
        for name, value in results.items():
            print(f"{name:<26} {value:>12,.0f} {value / base:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
