"""The post-commit wake-up hint: a coalescing `NOTIFY` sent outside every domain transaction.

Writers never `NOTIFY` inside their transaction (that takes a global lock at commit, R17). After
a commit they call `poke()`, which only sets a flag; one background task turns any number of
pokes into one `NOTIFY` at a time, at most one every 2 ms. The relay and projectors also poll,
so a lost hint only delays.
"""

import asyncio
import contextlib

import psycopg
import structlog

log = structlog.get_logger()

CHANNEL = "metachat_events"
MIN_INTERVAL_SECONDS = 0.002
"""At most one NOTIFY per this interval: pokes meanwhile are coalesced into the next."""


class Notifier:
    """Coalesces post-commit pokes into `NOTIFY metachat_events` on one autocommit connection."""

    def __init__(self, libpq_url: str) -> None:
        self._url = libpq_url
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def poke(self) -> None:
        """Ask for a NOTIFY soon; never blocks and never fails the caller."""
        self._wanted.set()

    async def start(self) -> None:
        """Start the background sender."""
        self._task = asyncio.create_task(self._run(), name="notifier")

    async def stop(self) -> None:
        """Stop the background sender."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    while True:
                        await self._wanted.wait()
                        self._wanted.clear()
                        await conn.execute(f"NOTIFY {CHANNEL}")
                        self.sent += 1
                        # Pokes during the next moment share one NOTIFY: a busy API commits
                        # about once a millisecond, and a hint per commit cost each of them a
                        # round trip here (and a NOTIFY transaction in PostgreSQL). The relay
                        # hears at most this much later.
                        await asyncio.sleep(MIN_INTERVAL_SECONDS)
            except (psycopg.Error, OSError) as exc:
                log.warning("notifier_reconnecting", error=str(exc))
                await asyncio.sleep(1.0)
