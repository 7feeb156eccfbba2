"""The scheduler opens every live session at boot, however many there are."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import partial

import trio

from hub.app.supervision import run_hub
from hub.db import run_with_database
from hub.db.seed import ensure_campus
from hub.pipeline.scheduler import SCHEDULER_MAILBOX

ROOMS = SCHEDULER_MAILBOX + 44  # more live sessions than the scheduler's mailbox holds


async def test_boot_opens_more_live_sessions_than_the_scheduler_mailbox_holds(hub_settings, aio_loop):
    now = datetime.now(timezone.utc)
    campus = await trio.to_thread.run_sync(lambda: run_with_database(
        hub_settings.database_url, lambda db: ensure_campus(db, rooms=ROOMS, students=20, now=now)))
    assert len(campus.sessions) == ROOMS
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, hub_settings, port=None))
        assert sorted(hub.sessions.child_ids()) == sorted(s.session_id for s in campus.sessions)
        nursery.cancel_scope.cancel()
