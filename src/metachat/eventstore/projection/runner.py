"""The runner: the one active instance of a projection keeps it current (R10, R11, R15)."""

import asyncio
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.postgres import GapFreeReader, PostgresEventStore
from metachat.eventstore.projection import lease
from metachat.eventstore.projection.checkpoints import (
    Checkpoint,
    CheckpointConflictError,
    ProjectionNotInstalledError,
    advance_checkpoint,
    load_checkpoint,
)
from metachat.eventstore.projection.definition import Projection
from metachat.settings import ProjectorSettings

log = structlog.get_logger()

_ERROR_BACKOFF = 1.0


async def process_batch(
    conn: AsyncConnection,
    projection: Projection,
    reader: GapFreeReader,
    checkpoint: Checkpoint,
    *,
    limit: int,
) -> tuple[Checkpoint, int]:
    """Read, apply and checkpoint one page in ONE transaction; return (checkpoint, page size).

    The checkpoint is the last processed position: it moves only together with the effects of
    the events up to it, and an empty page leaves it where it is (R10). A crash anywhere
    before the commit leaves both unchanged, so a restart re-applies at most this one page.
    """
    async with conn.begin():
        page = await reader.read(after=checkpoint.position, limit=limit, conn=conn)
        if page:
            await projection.apply(conn, page)
        to = page[-1].envelope.position if page else checkpoint.position
        advanced = await advance_checkpoint(
            conn, projection.name, expected=checkpoint, to=to, held_at=reader.held_at
        )
    return advanced, len(page)


async def wait_for_any(events: Sequence[asyncio.Event], wait_s: float) -> None:
    """Return when any event is set or after `wait_s` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class ProjectionRunner:
    """Keeps one projection current. Any number may run; the lease makes exactly one active.

    Attributes:
        active: True while this instance holds the lease.
        position: The checkpoint this instance last committed or loaded.
        held_at: The position the gap-free reader is waiting for, if any (R2's mark).
        processed: Events this instance has read and committed.
    """

    def __init__(
        self,
        projection: Projection,
        *,
        store: PostgresEventStore,
        settings: ProjectorSettings,
    ) -> None:
        self.projection = projection
        self._store = store
        self._batch = settings.batch_size
        self._poll = settings.poll_interval
        self.wake = asyncio.Event()
        """Set to make an idle runner look for events now (a `Wakeup` sets it on NOTIFY)."""
        self.active = False
        self.position: int | None = None
        self.held_at: int | None = None
        self.processed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop`. Failures are logged and retried; only a missing install is fatal."""
        while not stop.is_set():
            try:
                await self._contend(stop)
                continue
            except ProjectionNotInstalledError:
                raise
            except CheckpointConflictError:
                # Someone else wrote the checkpoint: our batch was rolled back; stand down and
                # contend again, which re-reads the checkpoint before any further write.
                log.exception("projection_checkpoint_conflict", projection=self.projection.name)
            except OperationalError as exc:
                # The database went away (restart, failover, a killed backend): an operational
                # event, not a bug, so one line without a traceback; the lease went with it.
                log.warning(
                    "projection_runner_disconnected",
                    projection=self.projection.name,
                    error=str(exc.orig or exc).splitlines()[0],
                )
            except Exception:
                log.exception("projection_runner_failed", projection=self.projection.name)
            await wait_for_any([stop], _ERROR_BACKOFF)

    async def _contend(self, stop: asyncio.Event) -> None:
        name = self.projection.name
        conn = await self._store.engine.connect()
        leased = False
        try:
            # A rebuild asking for the lease has priority: do not take it from under it.
            if not await lease.is_held(conn, lease.Lock.HANDOVER, name):
                leased = await lease.try_lock(conn, lease.Lock.LEASE, name)
            if leased:
                await self._lead(conn, stop)
        finally:
            if leased:
                # The lease lives exactly as long as this connection: close it for real rather
                # than return a connection holding a session lock to the pool.
                await conn.invalidate()
            await conn.close()
        if not leased:
            await wait_for_any([stop], self._poll)

    async def _lead(self, conn: AsyncConnection, stop: asyncio.Event) -> None:
        name = self.projection.name
        async with conn.begin():
            checkpoint = await load_checkpoint(conn, name)
        await conn.execution_options(
            schema_translate_map=self.projection.translate(checkpoint.generation)
        )
        self.active, self.position = True, checkpoint.position
        log.info(
            "projection_lease_taken",
            projection=name,
            position=checkpoint.position,
            generation=checkpoint.generation,
        )
        reader = self._store.reader()
        try:
            while not stop.is_set():
                if await lease.is_held(conn, lease.Lock.HANDOVER, name):
                    log.info(
                        "projection_lease_handed_over",
                        projection=name,
                        position=checkpoint.position,
                    )
                    return
                self.wake.clear()
                checkpoint, count = await process_batch(
                    conn, self.projection, reader, checkpoint, limit=self._batch
                )
                self.position, self.held_at = checkpoint.position, reader.held_at
                self.processed += count
                if count < self._batch:
                    await wait_for_any([stop, self.wake], self._poll)
        finally:
            self.active = False
