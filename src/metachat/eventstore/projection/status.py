"""Projection lag and liveness for the CLI, /metrics and health (R15)."""

from collections.abc import Iterable
from datetime import datetime

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.eventstore.projection.runner import ProjectionRunner


class ProjectionStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where one projection stands against the head of the event store.

    Attributes:
        name: The projection (its checkpoint name).
        position: Last processed position (the checkpoint).
        head: Highest committed position in the store.
        lag_events: `head - position`, in positions.
        lag_seconds: Age of the oldest event not yet processed (0 when caught up).
        heartbeat_at: Last loop of the active runner, idle loops included.
        heartbeat_age_seconds: Seconds since that heartbeat (None before the first one);
            health is red when it exceeds the stale threshold, even with no new events.
        generation: The generation readers currently see.
        held_at: The position the in-process runner waits for (None: not waiting, or not
            known in this process).
    """

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    heartbeat_at: datetime | None
    heartbeat_age_seconds: float | None
    generation: int
    held_at: int | None = None


# One statement, one snapshot: the head and every checkpoint are read at the same instant.
_STATUS = text("""
SELECT c.name, c.position, c.generation, c.heartbeat_at, c.held_at,
       extract(epoch FROM clock_timestamp() - c.heartbeat_at)::float8 AS heartbeat_age,
       h.head,
       coalesce(extract(epoch FROM clock_timestamp() - (
           SELECT e.occurred_at FROM eventstore.events AS e
           WHERE e.position > c.position ORDER BY e.position LIMIT 1))::float8, 0) AS lag_seconds
FROM eventstore.checkpoints AS c
CROSS JOIN (SELECT coalesce(max(position), 0) AS head FROM eventstore.events) AS h
ORDER BY c.name
""")


async def projection_status(
    engine: AsyncEngine, *, runners: Iterable[ProjectionRunner] = ()
) -> list[ProjectionStatus]:
    """Return the status of every checkpointed projection; `runners` add in-process `held_at`."""
    held = {r.projection.name: r.held_at for r in runners if r.active}
    async with engine.connect() as conn:
        rows = (await conn.execute(_STATUS)).all()
    return [
        ProjectionStatus(
            name=row.name,
            position=row.position,
            head=max(row.head, row.position),
            lag_events=max(row.head - row.position, 0),
            lag_seconds=max(float(row.lag_seconds), 0.0),
            heartbeat_at=row.heartbeat_at,
            heartbeat_age_seconds=None if row.heartbeat_age is None else float(row.heartbeat_age),
            generation=row.generation,
            held_at=held.get(row.name, row.held_at),
        )
        for row in rows
    ]
