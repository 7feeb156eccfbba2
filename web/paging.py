"""Paginated listings, in one place: the ``limit``/``offset`` query arguments, the
``{"items", "total", "limit", "offset"}`` envelope every listing returns, and the
OpenAPI pieces that describe both.

A route reads the slice it was asked for with :func:`page_request`, loads that
slice, and answers ``page_json(items, total, page)``; its operation documents
``page_params()`` and ``page_of(item_schema)``. Pure apart from
:func:`page_request`, which reads the current quart request: call it only
while handling one.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .apidoc import INT, array, obj, query_int
from .request import int_arg

#: The most items one page may hold, and how many a listing returns when ``limit`` is absent.
MAX_PAGE = 500
DEFAULT_PAGE = 50
#: Large enough for any table, small enough to refuse nonsense before it reaches SQL.
MAX_OFFSET = 10**9

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    """The slice of a listing one request asks for."""

    limit: int
    offset: int

    def of(self, items: Sequence[T]) -> Sequence[T]:
        """This slice of a listing already held in memory."""
        return items[self.offset:self.offset + self.limit]


def page_request(default_limit: int = DEFAULT_PAGE) -> PageRequest:
    """The current request's ``limit`` (1 to :data:`MAX_PAGE`, ``default_limit`` when absent) and
    ``offset`` (0 to :data:`MAX_OFFSET`, 0 when absent).

    Raises a 400 ``invalid_request`` whose ``field`` names the first bad argument (``limit`` first).
    """
    return PageRequest(int_arg("limit", default_limit, 1, MAX_PAGE), int_arg("offset", 0, 0, MAX_OFFSET))


def page_json(items: Iterable[Any], total: int, page: PageRequest, **extra: Any) -> dict[str, Any]:
    """The envelope of one page: ``items``, the listing's ``total``, the ``limit`` and ``offset``
    asked for, and any ``extra`` keys a listing adds (e.g. ``unread``)."""
    return {"items": list(items), "total": total, "limit": page.limit, "offset": page.offset, **extra}


def page_params(default_limit: int = DEFAULT_PAGE) -> list[dict]:
    """The OpenAPI ``limit`` and ``offset`` query parameters, as :func:`page_request` reads them."""
    return [query_int("limit", 1, MAX_PAGE, default_limit), query_int("offset", 0, MAX_OFFSET, 0)]


def page_of(item: dict, **extra: dict) -> dict:
    """The OpenAPI schema of :func:`page_json`'s envelope, with ``item`` the schema of one item."""
    return obj({"items": array(item), "total": INT, "limit": INT, "offset": INT, **extra})
