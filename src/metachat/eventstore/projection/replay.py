"""A rebuild's replay state: its connection, gap-free reader, counters and progress reports."""

import time
from collections.abc import Callable
from typing import Literal

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.envelope import Recorded
from metachat.eventstore.postgres import PostgresEventStore
from metachat.eventstore.projection.definition import Projection

Phase = Literal["replay", "handover", "catch-up", "done"]


class RebuildProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A progress report, sent after every page (events done, position against the head)."""

    name: str
    generation: int
    phase: Phase
    events: int
    position: int
    head: int
    events_per_s: float


ProgressFn = Callable[[RebuildProgress], None]


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


_HEAD = text("SELECT coalesce(max(position), 0) FROM eventstore.events")


class Replay:
    """Replays the store into one generation on one connection; counters move on commit."""

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
        self.projection, self.conn = projection, conn
        self.generation, self.batch_size, self.progress = generation, batch_size, progress
        self.reader = store.reader()
        self.position = 0
        self.events = 0
        self.started = time.perf_counter()

    async def apply_page(self) -> list[Recorded]:
        """Read and apply one page inside the caller's transaction; `advance` after commit."""
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
    def seconds(self) -> float:
        """Time since the replay started."""
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        """Events per second since the start."""
        return self.events / max(self.seconds, 1e-9)

    async def report(self, phase: Phase) -> None:
        """Send a progress report (reads the head, so only when someone listens)."""
        if self.progress is None:
            return
        async with self.conn.begin():
            head = int(await self.conn.scalar(_HEAD) or 0)
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

    def result(self, *, handover_s: float, switch_s: float, dropped: int | None) -> RebuildResult:
        """The final figures, once the switch is done."""
        return RebuildResult(
            name=self.projection.name,
            generation=self.generation,
            events=self.events,
            position=self.position,
            seconds=self.seconds,
            events_per_s=self.rate,
            handover_seconds=handover_s,
            switch_seconds=switch_s,
            dropped_generation=dropped,
        )
