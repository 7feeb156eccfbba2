"""Playwright driving Debian's Chromium (never a downloaded browser).

trio-asyncio replaces asyncio's global event-loop policy once imported, and
Playwright cannot run on its loop; so browser code runs on a plain
``SelectorEventLoop`` in a worker thread (:func:`run_in_browser_thread`).
"""
from __future__ import annotations

import asyncio
import tempfile
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

import trio
from playwright.async_api import BrowserContext, async_playwright

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying hosts this
# machine cannot reach; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@asynccontextmanager
async def chromium(*, phone: bool = False) -> AsyncIterator[BrowserContext]:
    """A headless Chromium with a throwaway profile; ``phone`` gives a phone-sized viewport."""
    with tempfile.TemporaryDirectory() as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 390, "height": 844} if phone else None, is_mobile=phone, has_touch=phone)
            try:
                yield context
            finally:
                await context.close()


async def run_in_browser_thread(script: Callable[[], Awaitable[Any]]) -> Any:
    """Run the asyncio coroutine function ``script`` on a plain event loop in a worker thread."""

    def run() -> Any:
        loop = asyncio.SelectorEventLoop()
        try:
            return loop.run_until_complete(script())
        finally:
            loop.close()

    return await trio.to_thread.run_sync(run)
