"""Zero-downtime rebuild: replay into generation N+1 while N serves, then switch (R12, R13).

Phases:
1. replay: under the REBUILD lock only, create generation N+1 and replay from position 0 in
   large pages; the live runner keeps advancing generation N and readers keep reading it.
2. handover: take HANDOVER (the live runner sees it and lets the lease go at the end of its
   current batch), then queue for the LEASE. From here generation N is frozen.
3. catch-up: replay until N+1 has reached at least N's frozen checkpoint, so that the switch
   never moves readers backwards in time.
4. switch: one transaction applies the last page, points the views at N+1 and sets the
   checkpoint's generation and position. Readers see N before the commit and N+1 after it.
5. release the lease (the runner resumes on N+1 from the new checkpoint) and drop N.

A rebuild only ever runs projection handlers, which take nothing but a database connection:
it never appends events, never writes the outbox and never runs a consumer (R13).
"""

import time

import msgspec
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.postgres import PostgresEventStore
from metachat.eventstore.projection import lease
from metachat.eventstore.projection.checkpoints import load_checkpoint
from metachat.eventstore.projection.definition import Projection
from metachat.eventstore.projection.replay import ProgressFn, RebuildError, RebuildResult, Replay
from metachat.eventstore.projection.schema import create_generation, drop_generation, generations
from metachat.eventstore.projection.switch import drop_replaced, switch

log = structlog.get_logger()

_LIVE_GENERATION = text("SELECT generation FROM eventstore.checkpoints WHERE name = :n FOR UPDATE")


async def _prepare(conn: AsyncConnection, projection: Projection) -> int:
    """Lock out other rebuilds, clear leftovers, create generation N+1; return N."""
    if not await lease.try_lock(conn, lease.Lock.REBUILD, projection.name):
        raise RebuildError(f"a rebuild of {projection.name!r} is already running")
    async with conn.begin():
        current = (await load_checkpoint(conn, projection.name)).generation
        for stale in await conn.run_sync(generations, projection):
            if stale != current:  # left by a rebuild that died before its switch
                await conn.run_sync(drop_generation, projection, stale)
        await conn.run_sync(create_generation, projection, current + 1)
    await conn.execution_options(schema_translate_map=projection.translate(current + 1))
    return current


async def _take_lease(replay: Replay, *, wait_s: float) -> float:
    """Ask the live runner for the lease and wait for it; return how long that took."""
    started = time.perf_counter()
    name = replay.projection.name
    await lease.lock_waiting(replay.conn, lease.Lock.HANDOVER, name, wait_s=wait_s)
    await lease.lock_waiting(replay.conn, lease.Lock.LEASE, name, wait_s=wait_s)
    return time.perf_counter() - started


async def _catch_up_to_live(replay: Replay, old: int) -> None:
    """Replay until N+1 is at least where the (now frozen) generation N stands."""
    async with replay.conn.begin():
        live = await load_checkpoint(replay.conn, replay.projection.name)
    if live.generation != old:
        raise RebuildError(f"generation moved from {old} to {live.generation} during the rebuild")
    while replay.position < live.position:
        if await replay.step() == 0:
            # The gap-free reader is waiting for its fence to clear (a dead gap): poll again.
            await replay.report("catch-up")
    while await replay.step() == replay.batch_size:
        await replay.report("catch-up")


async def _release_and_drop(replay: Replay, old: int) -> int | None:
    """Let the runner resume on N+1 at once, then drop N (which needs no lease)."""
    name = replay.projection.name
    await lease.unlock(replay.conn, lease.Lock.LEASE, name)
    await lease.unlock(replay.conn, lease.Lock.HANDOVER, name)
    await replay.report("done")
    return await drop_replaced(replay.conn, replay.projection, old)


async def _discard(store: PostgresEventStore, projection: Projection, generation: int) -> None:
    """Drop a generation that never went live (after a failed rebuild), on a fresh connection.

    A lost connection can hide a switch that did commit; the checkpoint row (locked, so no
    other switch can race this) tells, and a generation that went live is never dropped.
    """
    try:
        async with store.engine.begin() as conn:
            live = await conn.scalar(_LIVE_GENERATION, {"n": projection.name})
            if live == generation:
                log.warning(
                    "projection_switch_committed_after_all",
                    projection=projection.name,
                    generation=generation,
                )
                return
            await conn.run_sync(drop_generation, projection, generation)
    except Exception:
        log.exception(
            "projection_rebuild_cleanup_failed", projection=projection.name, generation=generation
        )


async def rebuild(
    projection: Projection,
    *,
    store: PostgresEventStore,
    progress: ProgressFn | None = None,
    batch_size: int = 5000,
    handover_timeout: float = 60.0,
) -> RebuildResult:
    """Rebuild a projection into a new generation and switch readers to it with no downtime.

    Raises:
        RebuildError: another rebuild runs, or the checkpoint moved under the hand-over.
        LeaseTimeoutError: the live runner did not let go of the lease within the timeout.
        ProjectionNotInstalledError: the projection has no checkpoint.
    """
    conn = await store.engine.connect()
    old: int | None = None
    switched = False
    try:
        old = await _prepare(conn, projection)
        replay = Replay(
            projection, store, conn, generation=old + 1, batch_size=batch_size, progress=progress
        )
        while await replay.step() == batch_size:
            await replay.report("replay")
        await replay.report("handover")
        handover = await _take_lease(replay, wait_s=handover_timeout)
        await _catch_up_to_live(replay, old)
        switch_seconds = await switch(replay, old)
        switched = True
        dropped = await _release_and_drop(replay, old)
    finally:
        # Closing the connection for real releases every session lock it still holds.
        await conn.invalidate()
        await conn.close()
        if old is not None and not switched:
            await _discard(store, projection, old + 1)
    result = replay.result(handover_s=handover, switch_s=switch_seconds, dropped=dropped)
    log.info("projection_rebuilt", **msgspec.structs.asdict(result))
    return result
