"""The outbox table's queries: claim a batch, settle it, beat, and measure the backlog.

The relay runs these on plain psycopg (named `%(param)s` placeholders), where they are prepared
once per connection; `outbox_stats` reads the same table through SQLAlchemy for /metrics.
"""

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Oldest first, by position: positions of one stream grow with its versions (an append needs the
# previous version committed), so position order is per-stream order. A row waiting out a retry
# back-off also holds back every later row of its stream, so a retried event is never overtaken
# by a younger event of the same aggregate (R3). No `FOR UPDATE SKIP LOCKED`: there is exactly
# one relay (the lease), and skipping locked rows is what reorders events in multi-relay setups.
# `in_flight` lists rows of batches published but not yet settled, so none is claimed twice.
CLAIM = """
SELECT o.position, e.event_id, e.tenant_id, e.stream_id, e.stream_version, e.type,
       e.schema_version, e.occurred_at, e.correlation_id, e.causation_id, e.actor, e.payload
FROM eventstore.outbox AS o
JOIN eventstore.events AS e ON e.position = o.position
WHERE (o.next_attempt_at IS NULL OR o.next_attempt_at <= now())
  AND o.position <> ALL(%(in_flight)s::bigint[])
  AND NOT EXISTS (
      SELECT 1 FROM eventstore.outbox AS b
      JOIN eventstore.events AS be ON be.position = b.position
      WHERE b.next_attempt_at > now() AND b.position < o.position
        AND be.stream_id = e.stream_id)
ORDER BY o.position
LIMIT %(limit)s
"""

# One statement per round: delete exactly the rows the broker acknowledged and beat the relay's
# heartbeat. `processed` accumulates across leaders, so it behaves as a counter (rate() works).
SETTLE = """
WITH settled AS (
    DELETE FROM eventstore.outbox WHERE position = ANY(%(positions)s::bigint[]) RETURNING 1
)
INSERT INTO eventstore.heartbeats AS h (name, holder, beat_at, processed)
SELECT 'relay', %(holder)s, now(), count(*) FROM settled
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, beat_at = excluded.beat_at,
    processed = h.processed + excluded.processed
"""

# Exponential back-off per row, capped: a long-unroutable event is retried about every `cap`
# seconds (and alerted each time) rather than hammering the broker or being dropped.
HOLD_BACK = """
UPDATE eventstore.outbox AS o
SET attempts = o.attempts + 1,
    last_error = f.error,
    next_attempt_at = now() + make_interval(
        secs => least(%(cap)s::float8, %(base)s::float8 * power(2, least(o.attempts, 30))))
FROM unnest(%(positions)s::bigint[], %(errors)s::text[]) AS f(position, error)
WHERE o.position = f.position
"""

_STATS = text("""
SELECT count(*) AS depth,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age,
       count(*) FILTER (WHERE attempts > 0) AS failing
FROM eventstore.outbox
""")


class OutboxStats(msgspec.Struct, frozen=True, kw_only=True):
    """How far behind the relay is.

    Attributes:
        depth: rows waiting to be published.
        oldest_age_seconds: age of the oldest waiting row (0 when empty).
        failing: rows that were returned or nacked at least once and are held for a retry.
    """

    depth: int
    oldest_age_seconds: float
    failing: int


async def outbox_stats(conn: AsyncConnection) -> OutboxStats:
    """Read the outbox's depth, oldest-row age and failing rows (for /metrics and health)."""
    row = (await conn.execute(_STATS)).one()
    return OutboxStats(
        depth=int(row.depth), oldest_age_seconds=float(row.age), failing=int(row.failing)
    )
