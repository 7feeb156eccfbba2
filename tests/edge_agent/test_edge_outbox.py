"""The durable outbox: crash safety, seq continuity, bounding policy, the async wrapper."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from edge_agent.outbox import AsyncOutbox, Outbox, OutboxError, OutboxFull


def enc(seq: int) -> bytes:
    return f"event-{seq}".encode()


def test_rows_survive_a_crash_and_seq_continues(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, device_id="dev-1")
    assert [box.append("qr_scan", enc) for _ in range(3)] == [1, 2, 3]
    # "Crash": published maybe, never acknowledged, never closed cleanly.
    del box

    box = Outbox(path, device_id="dev-1")
    rows = box.pending()
    assert [(r.seq, r.kind, r.payload) for r in rows] == [(s, "qr_scan", enc(s)) for s in (1, 2, 3)]
    assert box.depth == 3
    assert box.append("sensor_reading", enc) == 4
    assert box.delete([1, 2, 3, 4, 99]) == 4
    assert box.depth == 0
    box.close()

    # Seq never goes back, even when the table is empty (SQLite would reuse rowids).
    box = Outbox(path, device_id="dev-1")
    assert box.pending() == [] and box.depth == 0
    assert box.append("qr_scan", enc) == 5
    assert [r.seq for r in box.pending(after_seq=4)] == [5]
    assert box.pending(after_seq=5) == []
    box.close()


def test_payload_is_encoded_with_its_seq_and_failures_store_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", device_id="dev-1")

    def broken(seq: int) -> bytes:
        raise ValueError("oversize")

    with pytest.raises(ValueError):
        box.append("qr_scan", broken)
    assert box.depth == 0
    assert box.append("qr_scan", enc) == 1  # the failed append did not use a seq
    assert box.pending()[0].payload == b"event-1"
    box.close()


def test_full_outbox_drops_oldest_telemetry_and_refuses_checkins(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, device_id="dev-1", max_rows=3)
    box.append("sensor_reading", enc)  # 1
    box.append("qr_scan", enc)         # 2
    box.append("heartbeat", enc)       # 3
    assert box.append("qr_scan", enc) == 4  # evicts 1 (oldest telemetry)
    assert box.append("qr_scan", enc) == 5  # evicts 3
    assert [(r.seq, r.kind) for r in box.pending()] == [(2, "qr_scan"), (4, "qr_scan"), (5, "qr_scan")]
    assert box.append("sensor_reading", enc) is None  # only check-ins left: new telemetry dropped
    with pytest.raises(OutboxFull):
        box.append("biometric_match", enc)  # never silently dropped
    assert box.depth == 3
    box.close()

    box = Outbox(path, device_id="dev-1", max_rows=3)  # the counters are persistent
    assert box.counters == {"dropped.sensor_reading": 2, "dropped.heartbeat": 1, "rejected_full": 1}
    assert box.count_by_kind() == {"qr_scan": 3}
    with pytest.raises(OutboxFull):
        box.append("qr_scan", enc)
    box.close()


def test_outbox_belongs_to_one_device(tmp_path: Path) -> None:
    Outbox(tmp_path / "o.sqlite", device_id="dev-1").close()
    with pytest.raises(OutboxError, match="dev-1"):
        Outbox(tmp_path / "o.sqlite", device_id="dev-2")


def test_async_outbox_runs_sqlite_off_the_event_loop(tmp_path: Path) -> None:
    box = AsyncOutbox(tmp_path / "o.sqlite", device_id="dev-1")
    threads: set[str] = set()

    def encode(seq: int) -> bytes:
        threads.add(threading.current_thread().name)
        return enc(seq)

    async def main() -> None:
        seqs = await asyncio.gather(*(box.append("qr_scan", encode) for _ in range(20)))
        assert sorted(seqs) == list(range(1, 21))
        rows = await box.pending(after_seq=0, limit=5)
        assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
        assert await box.delete(r.seq for r in rows) == 5
        assert box.depth == 15

    asyncio.run(main())
    assert threads and all(name.startswith("outbox-dev-1") for name in threads)
    assert threading.main_thread().name not in threads
    box.close()
    box.close()  # idempotent
    with pytest.raises(OutboxError):
        asyncio.run(box.pending())
