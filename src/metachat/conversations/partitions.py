"""Monthly partitions of the messages read model: created ahead by a job, and on demand.

`conversation_messages` is partitioned by RANGE (posted_at), one partition per calendar month
(UTC), in every generation schema of its projection. There is no DEFAULT partition on purpose:
rows of a month that has one would be stuck in it the day that month's partition is created.
Instead a missing month is created when it is needed:

- ahead of time, by `run_partition_maintenance` (the projector role runs it hourly), for the
  current month and `months_ahead` more, in every generation (a rebuild's too);
- at install and rebuild (the projection's `setup`), the same window;
- on demand, by the projection handler before it inserts rows of a month with no partition
  (old months during a rebuild, or a message dated far ahead), so a write never fails for it.

Every partition inherits from the parent `tenant_id NOT NULL`, the foreign key to
`tenants.tenant_ids` and the index led by `tenant_id` (PostgreSQL clones them on creation), and
gets the row-level security policy of every tenant table (which PostgreSQL does not clone).
"""

import asyncio
import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

import structlog
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from metachat.database.tenancy import protect_tenant_tables
from metachat.eventstore.projection import PLACEHOLDER, Projection, load_checkpoint
from metachat.eventstore.projection.schema import generations

log = structlog.get_logger()

MESSAGES_TABLE = "conversation_messages"
"""The partitioned parent table, in each generation schema."""
MAINTENANCE_INTERVAL = 3600.0
"""Seconds between two runs of the scheduled partition job."""

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_LOCK_PURPOSE = 0x6D630201  # `mc` + 0201: the first advisory key of partition creation

_CHILDREN = text("""
SELECT c.relname
FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
JOIN pg_class AS p ON p.oid = i.inhparent
JOIN pg_namespace AS n ON n.oid = p.relnamespace
WHERE n.nspname = :schema AND p.relname = :parent
""")


def month_of(moment: date | datetime) -> date:
    """The first day of the UTC month containing `moment`."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC).date()
    return moment.replace(day=1)


def add_months(month: date, count: int) -> date:
    """The first day of the month `count` months after `month`'s (negative: before)."""
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    """The partition holding one month: `conversation_messages_y2026m11`."""
    return f"{MESSAGES_TABLE}_y{month.year:04d}m{month.month:02d}"


def _lock_params(schema: str) -> dict[str, int]:
    digest = hashlib.blake2b(schema.encode(), digest_size=4).digest()
    return {"k1": _LOCK_PURPOSE, "k2": int.from_bytes(digest, "big") & 0x7FFFFFFF}


def _missing(conn: Connection, schema: str, months: Iterable[date]) -> list[date]:
    existing = set(conn.scalars(_CHILDREN, {"schema": schema, "parent": MESSAGES_TABLE}))
    return sorted({m for m in map(month_of, months) if partition_name(m) not in existing})


def create_months(conn: Connection, *, schema: str, months: Iterable[date]) -> list[str]:
    """Create the partitions of `months` that do not exist yet (caller's transaction).

    Returns the names created. Idempotent; safe against concurrent creators.
    """
    if not _IDENTIFIER.match(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    wanted = list(months)
    if not _missing(conn, schema, wanted):
        return []  # the common case costs one catalogue read and takes no lock
    # Two creators (the hourly job and a projection handler, or two rebuild steps) could both
    # see a month missing; IF NOT EXISTS alone does not stop the loser from failing on the
    # catalogue's unique index. The transaction-scoped lock serialises them, and the check is
    # repeated under it. It is released with the caller's commit, together with the lock that
    # CREATE ... PARTITION OF takes on the parent.
    conn.execute(text("SELECT pg_advisory_xact_lock(:k1, :k2)"), _lock_params(schema))
    created = []
    for month in _missing(conn, schema, wanted):
        name, end = partition_name(month), add_months(month, 1)
        conn.execute(
            text(
                f'CREATE TABLE IF NOT EXISTS "{schema}"."{name}" '
                f'PARTITION OF "{schema}"."{MESSAGES_TABLE}" '
                f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') "
                f"TO ('{end.isoformat()} 00:00:00+00')"
            )
        )
        created.append(name)
    # A partition read directly is not covered by its parent's policy: it gets its own.
    protect_tenant_tables(conn, schema)
    return created


def create_window(
    conn: Connection, *, schema: str, around: date, months_ahead: int = 3
) -> list[str]:
    """Create the month of `around` and the `months_ahead` following ones where missing."""
    first = month_of(around)
    months = [add_months(first, n) for n in range(months_ahead + 1)]
    return create_months(conn, schema=schema, months=months)


def setup_generation(conn: Connection, schema: str) -> None:
    """The projection's `setup`: a new generation gets the current window of months."""
    create_window(conn, schema=schema, around=datetime.now(UTC).date())


async def ensure_partitions(
    conn: AsyncConnection, *, schema: str, around: date, months_ahead: int = 3
) -> list[str]:
    """Create the missing partitions from `around`'s month to `months_ahead` months later.

    Runs in the caller's transaction and returns the names of the partitions created.
    """
    return await conn.run_sync(
        lambda sync: create_window(sync, schema=schema, around=around, months_ahead=months_ahead)
    )


async def ensure_months(conn: AsyncConnection, months: Iterable[date]) -> list[str]:
    """Create on demand the months a projection handler's rows need.

    The schema is the one the connection's `schema_translate_map` points at: the generation
    being written (live runner or rebuild).
    """
    wanted = list(months)
    return await conn.run_sync(lambda sync: _create_in_translated(sync, wanted))


def _create_in_translated(conn: Connection, months: list[date]) -> list[str]:
    translate = conn.get_execution_options().get("schema_translate_map") or {}
    schema = translate.get(PLACEHOLDER)
    if schema is None:
        raise RuntimeError("projection handler called without a generation schema")
    return create_months(conn, schema=schema, months=months)


async def maintain_partitions(
    engine: AsyncEngine, projection: Projection, *, around: date, months_ahead: int = 3
) -> list[str]:
    """Create the window of months in every generation of `projection`; return the names."""
    created: list[str] = []
    async with engine.begin() as conn:
        await load_checkpoint(conn, projection.name)  # refuses a projection not installed
        schemas = [projection.schema(g) for g in await conn.run_sync(generations, projection)]
    for schema in schemas:
        # One transaction per generation: a rebuild may drop an old schema meanwhile, which
        # must not undo the partitions already made in the live one.
        async with engine.begin() as conn:
            created += await ensure_partitions(
                conn, schema=schema, around=around, months_ahead=months_ahead
            )
    return created


async def run_partition_maintenance(
    engine: AsyncEngine,
    projection: Projection,
    stop: asyncio.Event,
    *,
    interval: float = MAINTENANCE_INTERVAL,
) -> None:
    """The scheduled job: create partitions ahead every `interval` seconds until `stop`.

    A failed run is logged and retried at the next tick; the handler's on-demand creation
    covers the meantime, so a write never depends on this job.
    """
    while not stop.is_set():
        try:
            created = await maintain_partitions(engine, projection, around=datetime.now(UTC).date())
            log.info("message_partitions_maintained", created=created)
        except Exception:
            log.exception("message_partitions_maintenance_failed")
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            continue
