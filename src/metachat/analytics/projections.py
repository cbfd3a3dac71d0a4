"""The daily activity read model: upsert-increments of per-day counters.

The increment is not idempotent on its own; the consumer base writes the tracking rows in the
same transaction, which is what makes each event count exactly once. Many events at once
(`on_events`) make one increment per counter row, in key order, in one statement: the consumer
applies the messages it has in hand together instead of queueing one transaction per event on
the same few hot rows.
"""

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.envelope import Recorded

_INCREMENT = text("""
INSERT INTO analytics.daily_activity (tenant_id, day, event_type, count)
VALUES (:tenant_id, :day, :event_type, 1)
ON CONFLICT (tenant_id, day, event_type) DO UPDATE SET count = daily_activity.count + 1
""")
# Key order: two transactions incrementing the same rows lock them in the same order.
_INCREMENT_MANY = text("""
INSERT INTO analytics.daily_activity (tenant_id, day, event_type, count)
SELECT k.tenant_id, k.day, k.event_type, k.n
FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:days AS date[]), CAST(:types AS text[]),
            CAST(:counts AS bigint[])) AS k(tenant_id, day, event_type, n)
ORDER BY k.tenant_id, k.day, k.event_type
ON CONFLICT (tenant_id, day, event_type)
DO UPDATE SET count = daily_activity.count + excluded.count
""")


def activity_key(recorded: Recorded) -> tuple[uuid.UUID, date, str]:
    """The read-model row an event counts towards: its tenant, UTC day and type."""
    env = recorded.envelope
    return env.tenant_id, env.occurred_at.astimezone(UTC).date(), env.type


async def on_event(conn: AsyncConnection, recorded: Recorded) -> None:
    """Count one event in its tenant's daily activity."""
    tenant_id, day, event_type = activity_key(recorded)
    await conn.execute(_INCREMENT, {"tenant_id": tenant_id, "day": day, "event_type": event_type})


async def on_events(conn: AsyncConnection, recorded: Sequence[Recorded]) -> None:
    """Count many events: one increment per (tenant, day, type), by the number of its events."""
    counts = Counter(activity_key(r) for r in recorded)
    keys = sorted(counts)
    await conn.execute(
        _INCREMENT_MANY,
        {
            "tenant_ids": [k[0] for k in keys],
            "days": [k[1] for k in keys],
            "types": [k[2] for k in keys],
            "counts": [counts[k] for k in keys],
        },
    )
