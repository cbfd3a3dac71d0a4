"""A reaction's tracking statements, gathered across the reactions in flight (group commit).

A reaction (a consumer whose effect is its own commands, `ConsumerSpec.reaction`) checks its
tracking row before the effect and writes it after: two one-statement calls in autocommit per
message. The orchestrator has many replies in flight at once, so the checks that arrive while
one is on its way are sent together as one statement, and so are the rows (one insert, one
commit, one WAL flush for all of them): `Batcher` with no linger, so a lone message goes out at
once, as before.
"""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from metachat.eventstore.batches import Batcher
from metachat.eventstore.driver import Driver, call

_TRACKED = """SELECT event_id FROM eventstore.tracking
WHERE consumer = %(consumer)s AND event_id = ANY(CAST(%(event_ids)s AS uuid[]))"""
# In event-id order, as every insert of tracking rows: two that share rows lock them in the
# same order, so they wait for each other instead of deadlocking.
_TRACK = """INSERT INTO eventstore.tracking (consumer, event_id, position)
SELECT %(consumer)s, t.event_id, t.position
FROM unnest(CAST(%(event_ids)s AS uuid[]), CAST(%(positions)s AS bigint[])) AS t(event_id, position)
ORDER BY t.event_id
ON CONFLICT (consumer, event_id) DO NOTHING
RETURNING event_id"""


class ReactionTracking:
    """The tracking rows of one consumer's reactions: `seen` before the effect, `track` after."""

    def __init__(
        self, consumer: str, connection: Callable[[], AbstractAsyncContextManager[Driver]]
    ) -> None:
        self._consumer = consumer
        self._connection = connection
        self._checks: Batcher[uuid.UUID, bool] = _gathering(self._seen_all, f"{consumer}.tracked")
        self._rows: Batcher[tuple[uuid.UUID, int], None] = _gathering(
            self._track_all, f"{consumer}.tracking"
        )

    async def seen(self, event_id: uuid.UUID) -> bool:
        """Whether the event's tracking row is there (its effect was applied before)."""
        return await self._checks.submit(event_id)

    async def track(self, event_id: uuid.UUID, position: int) -> None:
        """Record the event as applied (committed when this returns)."""
        await self._rows.submit((event_id, position))

    async def _seen_all(self, event_ids: Sequence[uuid.UUID]) -> list[bool]:
        params = {"consumer": self._consumer, "event_ids": list(event_ids)}
        async with self._connection() as driver:
            found = {row.event_id for row in await call(driver, _TRACKED, params)}
        return [event_id in found for event_id in event_ids]

    async def _track_all(self, rows: Sequence[tuple[uuid.UUID, int]]) -> list[None]:
        params = {
            "consumer": self._consumer,
            "event_ids": [event_id for event_id, _ in rows],
            "positions": [position for _, position in rows],
        }
        async with self._connection() as driver:
            await call(driver, _TRACK, params)
        return [None for _ in rows]


Item = TypeVar("Item")
Result = TypeVar("Result")


def _gathering(
    apply_all: Callable[[Sequence[Item]], Awaitable[list[Result]]], name: str
) -> Batcher[Item, Result]:
    """A batcher with no linger whose lone item goes out alone, as one statement of its own."""

    async def apply_one(item: Item) -> Result:
        (result,) = await apply_all([item])
        return result

    return Batcher(
        apply_batch=apply_all,
        apply_one=apply_one,
        size=256,
        linger=0.0,
        name=name,
        single_alone=True,
    )
