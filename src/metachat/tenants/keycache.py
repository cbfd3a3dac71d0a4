"""API keys this process authenticated recently, forgotten the moment one is revoked.

Checking a key is one database call (`tenants.authenticate_api_key`); a busy integrator sends
the same key hundreds of times a second, so the API process remembers what the call answered,
by the key's keyed hash (never the key itself), for at most `ttl_s` seconds and never past the
key's own expiry.

Revocation must still take effect at once, in every process. The transaction that revokes a key
also sends `NOTIFY metachat_api_keys, '<key id>'` (delivered when it commits), and each cache
listens on its own connection and forgets that key when told. The cache is trusted only while
that connection is listening: before it is up, and from the moment it fails until it is back,
every request asks the database, and the entries are dropped (a notification may have been
missed meanwhile). A lookup that started before a revocation notice cannot store its now stale
answer after it: every notice moves a generation counter, and an answer is kept only if the
generation did not move while it was looked up.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import structlog

log = structlog.get_logger()

KEYS_CHANNEL = "metachat_api_keys"
"""Notified with a key's id by the transaction that revokes it."""
TTL_SECONDS = 60.0
MAX_ENTRIES = 10_000
_RECONNECT_AFTER = 1.0


@dataclass(frozen=True, slots=True)
class _Entry:
    answer: object
    key_id: uuid.UUID
    expires_at: datetime | None
    stale_at: float


class KeyCache:
    """Authenticated keys by keyed hash, invalidated by `NOTIFY metachat_api_keys`."""

    def __init__(
        self,
        libpq_url: str,
        *,
        ttl_s: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = libpq_url
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}
        self._generation = 0
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    @property
    def generation(self) -> int:
        """Moves on every revocation notice (and whenever the cache stops trusting itself)."""
        return self._generation

    def get(self, digest: bytes) -> object | None:
        """The remembered answer for a key's hash, if it may still be trusted.

        Called on the serving loop: the first call there starts the listener.
        """
        self._start()
        return self.peek(digest)

    def peek(self, digest: bytes) -> object | None:
        """`get` without starting the listener (for inspection from another loop)."""
        entry = self._entries.get(digest)
        if entry is None or not self._listening:
            return None
        if self._clock() >= entry.stale_at or (
            entry.expires_at is not None and entry.expires_at <= datetime.now(UTC)
        ):
            del self._entries[digest]
            return None
        return entry.answer

    def put(
        self,
        digest: bytes,
        answer: object,
        *,
        key_id: uuid.UUID,
        expires_at: datetime | None,
        generation: int,
    ) -> None:
        """Remember an answer looked up while the generation was `generation`."""
        if not self._listening or generation != self._generation:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[digest] = _Entry(
            answer=answer, key_id=key_id, expires_at=expires_at, stale_at=self._clock() + self._ttl
        )

    def forget(self, key_id: uuid.UUID) -> None:
        """Drop every entry of a key (revoked, here or in another process)."""
        self._generation += 1
        for digest in [d for d, e in self._entries.items() if e.key_id == key_id]:
            del self._entries[digest]

    def _distrust(self) -> None:
        self._listening = False
        self._generation += 1
        self._entries.clear()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is loop and not self._task.done():
            return
        # Started on first use, on the serving loop (as the stream hub is); started again if
        # that loop is gone (its listener with it) or the task ended.
        self._distrust()
        self._task = loop.create_task(self._run(), name="key-cache")

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {KEYS_CHANNEL}")
                    self._listening = True
                    async for notice in conn.notifies():
                        with contextlib.suppress(ValueError):
                            self.forget(uuid.UUID(notice.payload))
            except (psycopg.Error, OSError) as exc:
                log.warning("key_cache_listener_reconnecting", error=str(exc))
            finally:
                self._distrust()
            await asyncio.sleep(_RECONNECT_AFTER)

    async def close(self) -> None:
        """Stop listening (the entries are dropped)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            if task.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._distrust()
