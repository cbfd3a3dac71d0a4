"""Leadership for singleton loops: a PostgreSQL session advisory lock on a dedicated connection.

The lock belongs to the database session, not to a transaction, so it is held for exactly as
long as the connection lives. When the holder's process dies (even by SIGKILL) its socket closes,
the server ends the session and the lock is free again; a standby that retries every few hundred
milliseconds takes over within one retry interval. No lease table, no clock comparisons.
"""

import asyncio
import hashlib
import os
import socket
from typing import Any

import psycopg


def advisory_key(name: str) -> int:
    """Return the stable signed 64-bit advisory-lock key for a singleton's name."""
    digest = hashlib.sha256(f"metachat.leader.{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def holder_name() -> str:
    """Return `hostname:pid`, how a lease holder names itself in heartbeats and logs."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def wait_for_lease(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    *,
    retry: float,
    stop: asyncio.Event,
) -> bool:
    """Block until this session holds the lock named `name` (True), or `stop` is set (False).

    `conn` must be in autocommit mode and dedicated to the lease: closing it releases the lock.
    `pg_try_advisory_lock` never blocks, so a standby keeps its connection healthy (every retry
    is a round trip) and notices `stop` promptly, which a blocking `pg_advisory_lock` would not.
    """
    key = advisory_key(name)
    while not stop.is_set():
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        row = await cursor.fetchone()
        if row is not None and row[0] is True:
            return True
        try:
            await asyncio.wait_for(stop.wait(), timeout=retry)
        except TimeoutError:
            continue
    return False
