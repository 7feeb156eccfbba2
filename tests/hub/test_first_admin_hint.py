"""`campushub serve` on a database with no active admin logs one line saying how to create the first one."""
from __future__ import annotations

import logging
from functools import partial

import pytest
import trio

from hub.app.supervision import NO_ADMIN_HINT, run_hub
from hub.core.config import Settings
from hub.db import open_database
from hub.db.users import NewAccount, create_admin

pytestmark = pytest.mark.integration


async def _boot_lines(settings: Settings, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="campushub"):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_hub, settings, port=0))
            nursery.cancel_scope.cancel()
    return [r.getMessage() for r in caplog.records if r.getMessage() == NO_ADMIN_HINT]


async def test_hint_until_an_admin_exists(hub_settings: Settings, aio_loop, caplog) -> None:
    assert await _boot_lines(hub_settings, caplog) == [NO_ADMIN_HINT]
    assert "campushub users create-admin" in NO_ADMIN_HINT
    async with open_database(hub_settings.database_url, max_size=1) as db:
        await create_admin(db, NewAccount("first", "First Admin", "admin", password_hash="h"), actor="cli:test")
    assert await _boot_lines(hub_settings, caplog) == []
