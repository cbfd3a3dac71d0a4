"""Waiting for an asynchronous outcome in tests."""

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 60.0, every: float = 0.05
) -> None:
    """Poll `check` until it holds; fail after `within` seconds (a hang guard, not a timing claim)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within}s")
        await asyncio.sleep(every)
