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
from collections.abc import Callable
from typing import Literal

import msgspec
import structlog
from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.envelope import Recorded
from metachat.eventstore.postgres import PostgresEventStore
from metachat.eventstore.projection import lease
from metachat.eventstore.projection.checkpoints import load_checkpoint
from metachat.eventstore.projection.definition import Projection
from metachat.eventstore.projection.schema import (
    create_generation,
    drop_generation,
    generations,
    point_views,
)

log = structlog.get_logger()

Phase = Literal["replay", "handover", "catch-up", "switch", "done"]


class RebuildProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A progress report, sent after every page."""

    name: str
    generation: int
    phase: Phase
    events: int
    position: int
    head: int
    events_per_s: float


class RebuildResult(msgspec.Struct, frozen=True, kw_only=True):
    """The final figures of a rebuild."""

    name: str
    generation: int
    events: int
    position: int
    seconds: float
    events_per_s: float
    handover_seconds: float
    switch_seconds: float
    dropped_generation: int | None


class RebuildError(RuntimeError):
    """The rebuild could not finish; generation N still serves and N+1 has been dropped."""


ProgressFn = Callable[[RebuildProgress], None]

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


class _Replay:
    """One rebuild's connection, reader and counters."""

    def __init__(
        self,
        projection: Projection,
        store: PostgresEventStore,
        conn: AsyncConnection,
        *,
        generation: int,
        batch_size: int,
        progress: ProgressFn | None,
    ) -> None:
        self.projection, self.store, self.conn = projection, store, conn
        self.generation, self.batch_size, self.progress = generation, batch_size, progress
        self.reader = store.reader()
        self.position = 0
        self.events = 0
        self.started = time.perf_counter()

    async def apply_page(self) -> list[Recorded]:
        """Read and apply one page inside the caller's transaction (counters move on commit)."""
        page = await self.reader.read(after=self.position, limit=self.batch_size, conn=self.conn)
        if page:
            await self.projection.apply(self.conn, page)
        return page

    def advance(self, page: list[Recorded]) -> None:
        """Count a committed page."""
        if page:
            self.position = page[-1].envelope.position
            self.events += len(page)

    async def step(self) -> int:
        """Apply and commit one page; return its size."""
        async with self.conn.begin():
            page = await self.apply_page()
        self.advance(page)
        return len(page)

    @property
    def rate(self) -> float:
        """Events per second since the start."""
        return self.events / max(time.perf_counter() - self.started, 1e-9)

    async def report(self, phase: Phase) -> None:
        """Send a progress report."""
        if self.progress is None:
            return
        async with self.conn.begin():
            head = int(
                await self.conn.scalar(
                    text("SELECT coalesce(max(position), 0) FROM eventstore.events")
                )
                or 0
            )
        self.progress(
            RebuildProgress(
                name=self.projection.name,
                generation=self.generation,
                phase=phase,
                events=self.events,
                position=self.position,
                head=max(head, self.position),
                events_per_s=self.rate,
            )
        )


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


async def _take_lease(replay: _Replay, *, wait_s: float) -> float:
    """Ask the live runner for the lease and wait for it; return how long that took."""
    started = time.perf_counter()
    name = replay.projection.name
    await lease.lock_waiting(replay.conn, lease.Lock.HANDOVER, name, wait_s=wait_s)
    await lease.lock_waiting(replay.conn, lease.Lock.LEASE, name, wait_s=wait_s)
    return time.perf_counter() - started


async def _catch_up_to_live(replay: _Replay, old: int) -> None:
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


async def _switch(replay: _Replay, old: int) -> float:
    """Apply the last page, point the views and the checkpoint at N+1: one transaction."""
    conn, name = replay.conn, replay.projection.name
    for attempt in range(1, _DDL_ATTEMPTS + 1):
        started = time.perf_counter()
        try:
            async with conn.begin():
                await conn.execute(text(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT}'"))
                live = (await conn.execute(_LOCK_CHECKPOINT, {"n": name})).one()
                if live.generation != old or live.position > replay.position:
                    raise RebuildError(f"checkpoint of {name!r} moved during the hand-over")
                page = await replay.apply_page()
                position = page[-1].envelope.position if page else replay.position
                await conn.run_sync(point_views, replay.projection, old + 1)
                await conn.execute(
                    _SWITCH_CHECKPOINT, {"n": name, "new": old + 1, "old": old, "p": position}
                )
        except DBAPIError as exc:
            if not isinstance(exc.orig, pg_errors.LockNotAvailable) or attempt == _DDL_ATTEMPTS:
                raise
            log.warning("projection_switch_retry", projection=name, attempt=attempt)
            continue
        replay.advance(page)
        return time.perf_counter() - started
    raise AssertionError("unreachable")


async def _drop_old(conn: AsyncConnection, projection: Projection, generation: int) -> int | None:
    """Drop generation N once no reader holds it; leave it for the next rebuild if one does."""
    for attempt in range(1, _DDL_ATTEMPTS + 1):
        try:
            async with conn.begin():
                await conn.execute(text(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT}'"))
                await conn.run_sync(drop_generation, projection, generation)
        except DBAPIError as exc:
            if not isinstance(exc.orig, pg_errors.LockNotAvailable):
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


async def _discard(store: PostgresEventStore, projection: Projection, generation: int) -> None:
    """Drop a generation that never went live (after a failed rebuild), on a fresh connection."""
    try:
        async with store.engine.begin() as conn:
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
    """
    conn = await store.engine.connect()
    old: int | None = None
    switched = False
    try:
        old = await _prepare(conn, projection)
        replay = _Replay(
            projection, store, conn, generation=old + 1, batch_size=batch_size, progress=progress
        )
        while await replay.step() == batch_size:
            await replay.report("replay")
        await replay.report("handover")
        handover = await _take_lease(replay, wait_s=handover_timeout)
        await _catch_up_to_live(replay, old)
        switch = await _switch(replay, old)
        switched = True
        # The runner may resume on N+1 now; dropping N does not need the lease.
        await lease.unlock(conn, lease.Lock.LEASE, projection.name)
        await lease.unlock(conn, lease.Lock.HANDOVER, projection.name)
        await replay.report("done")
        dropped = await _drop_old(conn, projection, old)
    finally:
        # Closing the connection for real releases every session lock it still holds.
        await conn.invalidate()
        await conn.close()
        if old is not None and not switched:
            await _discard(store, projection, old + 1)
    seconds = time.perf_counter() - replay.started
    log.info(
        "projection_rebuilt",
        projection=projection.name,
        generation=old + 1,
        events=replay.events,
        seconds=round(seconds, 3),
        switch_seconds=round(switch, 4),
    )
    return RebuildResult(
        name=projection.name,
        generation=old + 1,
        events=replay.events,
        position=replay.position,
        seconds=seconds,
        events_per_s=replay.rate,
        handover_seconds=handover,
        switch_seconds=switch,
        dropped_generation=dropped,
    )
