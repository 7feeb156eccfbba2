"""``run_with_database`` (hub/db/_pool.py) hands a synchronous caller the error its work raised,
not the exception groups of the trio nurseries in between: the CLIs catch errors by type."""
from __future__ import annotations

import pytest
import trio

from hub.db import Database, run_with_database

pytestmark = pytest.mark.integration


def test_the_error_of_the_work_reaches_the_caller_as_itself(fresh_database_url: str) -> None:
    async def refuse(db: Database) -> None:
        await db.fetchval("SELECT 1")
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(FileNotFoundError) as caught:
        run_with_database(fresh_database_url, refuse)
    assert caught.value.__context__ is None  # not raised while handling the group


def test_several_errors_at_once_stay_a_group(fresh_database_url: str) -> None:
    async def fail(message: str) -> None:
        raise ValueError(message)

    async def two_failures(db: Database) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail, "one")
            nursery.start_soon(fail, "two")

    with pytest.raises(BaseExceptionGroup) as caught:
        run_with_database(fresh_database_url, two_failures)
    both = caught.value.subgroup(ValueError)
    assert both is not None and sorted(str(e) for e in _leaves(both)) == ["one", "two"]


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]
