"""The atomic switch to a rebuilt generation, and the drop of the generation it replaced."""

import time

import structlog
from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.projection.definition import Projection
from metachat.eventstore.projection.replay import RebuildError, Replay
from metachat.eventstore.projection.schema import drop_generation, point_views

log = structlog.get_logger()

# A long reader transaction must not make the switch (or the drop) wait forever, and while
# they wait, new readers queue behind their exclusive lock: give up quickly and try again.
_DDL_LOCK_TIMEOUT = "2s"
_DDL_ATTEMPTS = 5

_LOCK_CHECKPOINT = text(
    "SELECT position, generation FROM eventstore.checkpoints WHERE name = :n FOR UPDATE"
)
_SWITCH_CHECKPOINT = text("""
UPDATE eventstore.checkpoints
SET generation = :new, position = :p, updated_at = now(), heartbeat_at = now()
WHERE name = :n AND generation = :old
""")


def _lock_timeout(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, pg_errors.LockNotAvailable)


async def _switch_once(replay: Replay, old: int) -> None:
    conn, name = replay.conn, replay.projection.name
    async with conn.begin():
        await conn.execute(text(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT}'"))
        live = (await conn.execute(_LOCK_CHECKPOINT, {"n": name})).one()
        if live.generation != old or live.position > replay.position:
            raise RebuildError(f"checkpoint of {name!r} moved during the hand-over")
        page = await replay.apply_page()
        position = page[-1].envelope.position if page else replay.position
        await conn.run_sync(point_views, replay.projection, old + 1)
        params = {"n": name, "new": old + 1, "old": old, "p": position}
        await conn.execute(_SWITCH_CHECKPOINT, params)
    replay.advance(page)


async def switch(replay: Replay, old: int) -> float:
    """In ONE transaction: apply the last page, point the views and the checkpoint at N+1.

    Readers see generation N before the commit and N+1 after it, never anything in between.
    The caller holds the lease, so N's checkpoint cannot move meanwhile. Returns the duration
    of the transaction that succeeded.
    """
    for attempt in range(1, _DDL_ATTEMPTS + 1):
        started = time.perf_counter()
        try:
            await _switch_once(replay, old)
        except DBAPIError as exc:
            if not _lock_timeout(exc) or attempt == _DDL_ATTEMPTS:
                raise
            log.warning(
                "projection_switch_retry", projection=replay.projection.name, attempt=attempt
            )
            continue
        return time.perf_counter() - started
    raise AssertionError("unreachable")


async def drop_replaced(
    conn: AsyncConnection, projection: Projection, generation: int
) -> int | None:
    """Drop generation N once no reader holds it; leave it for the next rebuild if one does."""
    for attempt in range(1, _DDL_ATTEMPTS + 1):
        try:
            async with conn.begin():
                await conn.execute(text(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT}'"))
                await conn.run_sync(drop_generation, projection, generation)
        except DBAPIError as exc:
            if not _lock_timeout(exc):
                raise
            log.warning("projection_drop_retry", projection=projection.name, attempt=attempt)
            continue
        return generation
    log.warning(
        "projection_old_generation_kept",
        projection=projection.name,
        generation=generation,
        reason="still in use by a reader; the next rebuild drops it",
    )
    return None
