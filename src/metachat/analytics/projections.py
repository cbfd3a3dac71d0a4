"""The daily activity read model: one upsert-increment per event.

The increment is not idempotent on its own; the consumer base writes the tracking row in the
same transaction, which is what makes each event count exactly once.
"""

import uuid
from datetime import UTC, date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.envelope import Recorded

_INCREMENT = text("""
INSERT INTO analytics.daily_activity (tenant_id, day, event_type, count)
VALUES (:tenant_id, :day, :event_type, 1)
ON CONFLICT (tenant_id, day, event_type) DO UPDATE SET count = daily_activity.count + 1
""")


def activity_key(recorded: Recorded) -> tuple[uuid.UUID, date, str]:
    """The read-model row an event counts towards: its tenant, UTC day and type."""
    env = recorded.envelope
    return env.tenant_id, env.occurred_at.astimezone(UTC).date(), env.type


async def on_event(conn: AsyncConnection, recorded: Recorded) -> None:
    """Count one event in its tenant's daily activity."""
    tenant_id, day, event_type = activity_key(recorded)
    await conn.execute(_INCREMENT, {"tenant_id": tenant_id, "day": day, "event_type": event_type})
