"""The one shape of a listing's page as hub/db returns it (web/paging.py is the web side:
the ``limit``/``offset`` arguments and the JSON envelope)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Page(NamedTuple, Generic[T]):
    """One page of a listing: its ``items`` in the listing's order and the listing's ``total``
    (every row, not just this page's). A tuple, so ``items, total = await list_x(...)`` reads it too."""

    items: Sequence[T]
    total: int
