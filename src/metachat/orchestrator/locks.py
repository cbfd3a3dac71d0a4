"""One reply at a time per conversation, across every orchestrator process.

A message that arrives while a reply is being generated must be answered after it, not beside
it (two replies at once would each answer the other's messages). Each process keeps an asyncio
lock per conversation, and holds a PostgreSQL session advisory lock while it generates, so
another process waits too.

The advisory locks live on a few dedicated autocommit connections per process (`CONNECTIONS`;
a conversation always uses the same one, since a session lock is released by the session that
took it) and are taken with `pg_try_advisory_lock` in a short poll: a blocking
`pg_advisory_lock` would stall every other lock on that connection, and a pooled connection per
waiting reply would starve the pool the replies themselves need. (With a single connection,
every lock and unlock of a busy process queued behind all the others.) No transaction is open
while a lock is held, so nothing holds back the gap-free readers (R2). If a connection drops,
its locks go with it; the conversation's optimistic concurrency and the per-message reply key
still keep replies single.
"""

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg

_PURPOSE = 0x6D630401  # `mc` + 0401: the advisory key space of reply generation
POLL_SECONDS = 0.05
CONNECTIONS = 4


def _key(conversation_id: uuid.UUID) -> int:
    digest = hashlib.blake2b(conversation_id.bytes, digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


class ConversationLocks:
    """Per-conversation mutual exclusion for reply generation."""

    def __init__(
        self, libpq_url: str, *, poll: float = POLL_SECONDS, connections: int = CONNECTIONS
    ) -> None:
        self._url = libpq_url
        self._poll = poll
        self._local: dict[uuid.UUID, asyncio.Lock] = {}
        self._waiters: dict[uuid.UUID, int] = {}
        self._conns: list[psycopg.AsyncConnection[Any] | None] = [None] * connections
        self._connecting = [asyncio.Lock() for _ in range(connections)]

    async def connect(self) -> None:
        """Open every connection now (a process's start-up) rather than on first use."""
        await asyncio.gather(*(self._connect(index) for index in range(len(self._conns))))

    async def _connection(self, conversation_id: uuid.UUID) -> psycopg.AsyncConnection[Any]:
        return await self._connect(_key(conversation_id) % len(self._conns))

    async def _connect(self, index: int) -> psycopg.AsyncConnection[Any]:
        conn = self._conns[index]
        if conn is not None and not conn.closed:
            return conn
        async with self._connecting[index]:
            conn = self._conns[index]
            if conn is None or conn.closed:
                conn = self._conns[index] = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                )
            return conn

    @contextlib.asynccontextmanager
    async def hold(self, conversation_id: uuid.UUID) -> AsyncIterator[None]:
        """Hold the conversation's lock for the block (waiting for it as long as it takes)."""
        self._waiters[conversation_id] = self._waiters.get(conversation_id, 0) + 1
        local = self._local.setdefault(conversation_id, asyncio.Lock())
        try:
            async with local:
                await self._acquire(conversation_id)
                try:
                    yield
                finally:
                    await self._release(conversation_id)
        finally:
            self._waiters[conversation_id] -= 1
            if not self._waiters[conversation_id]:
                del self._waiters[conversation_id]
                del self._local[conversation_id]

    async def _acquire(self, conversation_id: uuid.UUID) -> None:
        params = (_PURPOSE, _key(conversation_id))
        while True:
            conn = await self._connection(conversation_id)
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", params)
            row = await cursor.fetchone()
            if row is not None and row[0]:
                return
            await asyncio.sleep(self._poll)

    async def _release(self, conversation_id: uuid.UUID) -> None:
        with contextlib.suppress(psycopg.Error):  # a lost connection released it already
            conn = await self._connection(conversation_id)
            await conn.execute(
                "SELECT pg_advisory_unlock(%s, %s)", (_PURPOSE, _key(conversation_id))
            )

    async def close(self) -> None:
        """Close the lock connection (releasing any lock still held)."""
        for conn in self._conns:
            if conn is not None:
                await conn.close()
