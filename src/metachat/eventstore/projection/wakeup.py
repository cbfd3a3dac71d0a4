"""Wake-ups for runners: LISTEN on the events channel; a lost notification only delays (polling)."""

import asyncio
import contextlib

import psycopg
import structlog

from metachat.eventstore.notify import CHANNEL

log = structlog.get_logger()

_RECONNECT_AFTER = 1.0


class Wakeup:
    """One LISTEN connection that sets the wake event of every subscribed runner."""

    def __init__(self, libpq_url: str) -> None:
        self._url = libpq_url
        self._events: list[asyncio.Event] = []

    def add(self, event: asyncio.Event) -> None:
        """Set `event` on every notification from now on (its owner clears it)."""
        self._events.append(event)

    def discard(self, event: asyncio.Event) -> None:
        """Stop setting `event` (its owner went away)."""
        if event in self._events:
            self._events.remove(event)

    def _wake_all(self) -> None:
        for event in self._events:
            event.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`, reconnecting after errors."""
        while not stop.is_set():
            try:
                await self._listen(stop)
            except (psycopg.Error, OSError) as exc:
                log.warning("projection_wakeup_reconnecting", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _RECONNECT_AFTER)

    async def _listen(self, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            # Anything committed while we were not listening would otherwise wait for a poll.
            self._wake_all()
            while not stop.is_set():
                async for _ in conn.notifies(timeout=_RECONNECT_AFTER):
                    self._wake_all()
