"""Session advisory locks that make one process the writer of a projection (R11).

Three locks per projection, each a two-key advisory lock (purpose, hash of the name):
- `LEASE`: held by the one instance allowed to write the projection (its runner, or a rebuild
  during its hand-over). Session-scoped on the writer's own connection, so it vanishes with the
  connection: a killed process can never keep it.
- `HANDOVER`: held by a rebuild that wants the lease; the active runner sees it at the top of
  its next loop and lets the lease go, and passive instances do not try to take it meanwhile.
- `REBUILD`: held for a whole rebuild, so two rebuilds of one projection never overlap.
"""

import enum
import hashlib

from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection


class Lock(enum.IntEnum):
    """The purpose half of the advisory key (arbitrary constants, spelled `mc` + n)."""

    LEASE = 0x6D630101
    HANDOVER = 0x6D630102
    REBUILD = 0x6D630103


class LeaseTimeoutError(TimeoutError):
    """The lock was not granted in time (the holder did not let go)."""


def name_key(name: str) -> int:
    """A stable, non-negative 31-bit key for a projection name (the second advisory key)."""
    digest = hashlib.blake2b(name.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _params(lock: Lock, name: str) -> dict[str, int]:
    return {"k1": int(lock), "k2": name_key(name)}


async def try_lock(conn: AsyncConnection, lock: Lock, name: str) -> bool:
    """Take a session lock if it is free; never waits."""
    async with conn.begin():
        got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k1, :k2)"), _params(lock, name))
    return bool(got)


async def lock_waiting(conn: AsyncConnection, lock: Lock, name: str, *, wait_s: float) -> None:
    """Take a session lock, queueing behind the holder for at most `wait_s` seconds.

    Waiting in PostgreSQL's lock queue (rather than polling with try_lock) matters for the
    rebuild's hand-over: when the runner lets the lease go, the lock manager grants it to the
    queued waiter at once, so a passive instance polling with try_lock cannot slip in between.
    """
    async with conn.begin():
        await conn.execute(text(f"SET LOCAL lock_timeout = '{int(wait_s * 1000)}ms'"))
        try:
            await conn.execute(text("SELECT pg_advisory_lock(:k1, :k2)"), _params(lock, name))
        except DBAPIError as exc:
            if isinstance(exc.orig, pg_errors.LockNotAvailable):
                msg = f"{lock.name} lock of {name!r} not granted in {wait_s}s"
                raise LeaseTimeoutError(msg) from exc
            raise


async def unlock(conn: AsyncConnection, lock: Lock, name: str) -> None:
    """Release a session lock this connection holds."""
    async with conn.begin():
        await conn.execute(text("SELECT pg_advisory_unlock(:k1, :k2)"), _params(lock, name))


# Two-key advisory locks show up in pg_locks as (classid, objid, objsubid = 2); the database
# column matters because every test database on a shared server has its own lock space.
_IS_HELD = text("""
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid::bigint = :k1 AND objid::bigint = :k2)
""")


async def is_held(conn: AsyncConnection, lock: Lock, name: str) -> bool:
    """True if any session holds the lock (read-only: never takes it, so never disturbs it)."""
    async with conn.begin():
        return bool(await conn.scalar(_IS_HELD, _params(lock, name)))
