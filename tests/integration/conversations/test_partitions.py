"""Monthly partitions of the messages read model: ahead, on demand, and tenant-safe in each."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime

import pytest
import pytest_asyncio
from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.bootstrap import Deps, build
from metachat.conversations.partitions import (
    add_months,
    ensure_partitions,
    maintain_partitions,
    month_of,
    partition_name,
)
from metachat.conversations.projections import CONVERSATION_MESSAGES
from metachat.conversations.queries import list_messages
from tests.conftest import make_settings
from tests.integration.conversations.read_models_support import (
    a_message,
    apply_messages,
    new_tenant,
)

SCHEMA = CONVERSATION_MESSAGES.schema(1)

_CHILDREN = text("""
SELECT c.oid, c.relname FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = CAST(:parent AS regclass) ORDER BY c.relname
""")


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=4)
    yield built
    await built.close()


async def _children(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(_CHILDREN, {"parent": f"{SCHEMA}.conversation_messages"})
    return [row.relname for row in rows]


def _window(first: date, count: int) -> list[str]:
    return [partition_name(add_months(month_of(first), n)) for n in range(count)]


class TestPartitionsAhead:
    async def test_install_creates_this_month_and_three_ahead(self, deps: Deps) -> None:
        async with deps.engine.connect() as conn:
            children = await _children(conn)
        assert set(_window(datetime.now(UTC).date(), 4)) <= set(children)

    async def test_the_job_creates_missing_months_once(self, deps: Deps) -> None:
        around = date(2031, 12, 15)
        created = await maintain_partitions(deps.engine, CONVERSATION_MESSAGES, around=around)
        again = await maintain_partitions(deps.engine, CONVERSATION_MESSAGES, around=around)
        async with deps.engine.connect() as conn:
            children = await _children(conn)
        assert created == _window(around, 4)
        assert created[-1] == "conversation_messages_y2032m03"
        assert again == []
        assert set(created) <= set(children)

    async def test_concurrent_creators_do_not_race(self, deps: Deps) -> None:
        async def create() -> list[str]:
            async with deps.engine.begin() as conn:
                return await ensure_partitions(
                    conn, schema=SCHEMA, around=date(2040, 1, 1), months_ahead=6
                )

        results = await asyncio.gather(*(create() for _ in range(4)))
        assert sorted(name for result in results for name in result) == _window(date(2040, 1, 1), 7)


class TestOnDemand:
    async def test_a_message_fourteen_months_ahead_still_projects(self, deps: Deps) -> None:
        tenant_id, conversation_id = await new_tenant(deps), uuid.uuid4()
        far = add_months(month_of(datetime.now(UTC)), 14)
        posted_at = datetime(far.year, far.month, 10, 12, tzinfo=UTC)
        async with deps.engine.begin() as conn:
            await apply_messages(
                conn, [a_message(tenant_id, conversation_id, posted_at, position=1)]
            )
        async with deps.engine.connect() as conn:
            children = await _children(conn)
            page = await list_messages(
                conn, tenant_id=tenant_id, conversation_id=conversation_id, limit=10
            )
        assert partition_name(far) in children
        assert [m.posted_at for m in page.items] == [posted_at]


class TestEveryPartitionIsTenantSafe:
    async def test_an_unknown_tenant_is_refused_in_every_partition(self, deps: Deps) -> None:
        await maintain_partitions(deps.engine, CONVERSATION_MESSAGES, around=date(2030, 6, 1))
        async with deps.engine.connect() as conn:
            rows = (
                await conn.execute(_CHILDREN, {"parent": f"{SCHEMA}.conversation_messages"})
            ).all()
            bounds = {
                row.relname: (
                    await conn.scalar(
                        text("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = :o"),
                        {"o": row.oid},
                    )
                )
                for row in rows
            }
        assert len(rows) >= 8
        for row in rows:
            posted_at = _inside(bounds[row.relname])
            with pytest.raises(IntegrityError) as refused:
                async with deps.engine.begin() as conn:
                    await conn.execute(
                        text(
                            f'INSERT INTO "{SCHEMA}"."{row.relname}" (tenant_id, conversation_id,'
                            " message_id, sender, text, metadata, posted_at, position) VALUES"
                            " (:t, :c, :m, 'customer', 'x', '{}', :at, 1)"
                        ),
                        {"t": uuid.uuid4(), "c": uuid.uuid4(), "m": uuid.uuid4(), "at": posted_at},
                    )
            assert isinstance(refused.value.orig, pg_errors.ForeignKeyViolation), row.relname

    async def test_every_partition_has_an_index_led_by_tenant_id(self, deps: Deps) -> None:
        async with deps.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("""
                    SELECT c.relname,
                           bool_or(a.attname = 'tenant_id') AS led_by_tenant,
                           bool_and(NOT a.attnotnull) AS any_nullable
                    FROM pg_inherits AS i
                    JOIN pg_class AS c ON c.oid = i.inhrelid
                    JOIN pg_index AS x ON x.indrelid = c.oid
                    JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
                    WHERE i.inhparent = CAST(:parent AS regclass)
                    GROUP BY c.relname
                    """),
                    {"parent": f"{SCHEMA}.conversation_messages"},
                )
            ).all()
            children = await _children(conn)
            nullable = await conn.scalar(
                text("""
                SELECT count(*) FROM pg_inherits AS i
                JOIN pg_attribute AS a ON a.attrelid = i.inhrelid AND a.attname = 'tenant_id'
                WHERE i.inhparent = CAST(:parent AS regclass) AND NOT a.attnotnull
                """),
                {"parent": f"{SCHEMA}.conversation_messages"},
            )
        assert sorted(r.relname for r in rows) == children
        assert all(r.led_by_tenant for r in rows)
        assert nullable == 0


def _inside(bound: str) -> datetime:
    """A moment inside `FOR VALUES FROM ('2026-11-01 00:00:00+00') TO (...)`."""
    start = bound.split("'")[1]
    return datetime.fromisoformat(start).replace(day=2)
