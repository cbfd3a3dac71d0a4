"""Read-side queries of the analytics context; `tenant_id` is always required."""

import uuid
from datetime import date

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class DailyActivity(msgspec.Struct, frozen=True, kw_only=True):
    """How many events of one type a tenant produced on one UTC day."""

    day: date
    event_type: str
    count: int


_LIST = text("""
SELECT day, event_type, count AS events FROM analytics.daily_activity
WHERE tenant_id = :tenant_id AND day >= :since
ORDER BY day, event_type
""")


async def list_daily_activity(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, since: date
) -> list[DailyActivity]:
    """Return a tenant's daily counts from `since` (inclusive), by day then event type."""
    rows = (await conn.execute(_LIST, {"tenant_id": tenant_id, "since": since})).all()
    return [DailyActivity(day=row.day, event_type=row.event_type, count=row.events) for row in rows]
