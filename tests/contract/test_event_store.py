"""One contract suite, run against the in-memory and the PostgreSQL event store."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from metachat.bootstrap import build_registry
from metachat.database.engine import create_engine
from metachat.eventstore.envelope import Metadata
from metachat.eventstore.postgres import PostgresEventStore
from metachat.eventstore.store import EventStore, InMemoryEventStore
from metachat.kernel.actors import Actor
from metachat.kernel.errors import ConcurrencyError
from metachat.kernel.ids import uuid7
from metachat.tenants.events import TenantCreated, TenantRenamed


@pytest_asyncio.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    registry = build_registry()
    if request.param == "memory":
        yield InMemoryEventStore(registry)
        return
    url = request.getfixturevalue("new_database")()
    engine = create_engine(url, pool_size=4)
    yield PostgresEventStore(engine, registry)
    await engine.dispose()


async def _tenant_metadata(store: EventStore) -> Metadata:
    tenant_id = uuid7()
    if isinstance(store, PostgresEventStore):
        async with store.engine.begin() as conn:
            from sqlalchemy import text

            await conn.execute(
                text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"), {"t": tenant_id}
            )
    return Metadata(tenant_id=tenant_id, actor=Actor.system(), correlation_id=uuid7())


class TestAppend:
    async def test_appends_and_reads_back_in_order(self, store: EventStore) -> None:
        meta = await _tenant_metadata(store)
        events = [
            TenantCreated(tenant_id=meta.tenant_id, name="Acme"),
            TenantRenamed(name="Acme 2"),
        ]
        recorded = await store.append("s-1", events, expected_version=0, metadata=meta)
        assert [r.envelope.stream_version for r in recorded] == [1, 2]
        back = await store.read_stream("s-1")
        assert [r.event for r in back] == events
        assert [r.envelope.event_id for r in back] == [r.envelope.event_id for r in recorded]
        assert back[0].envelope.tenant_id == meta.tenant_id
        assert back[0].envelope.position < back[1].envelope.position

    async def test_rejects_stale_expected_version(self, store: EventStore) -> None:
        meta = await _tenant_metadata(store)
        await store.append("s-2", [TenantRenamed(name="a")], expected_version=0, metadata=meta)
        with pytest.raises(ConcurrencyError):
            await store.append("s-2", [TenantRenamed(name="b")], expected_version=0, metadata=meta)

    async def test_rejects_expected_version_ahead_of_stream(self, store: EventStore) -> None:
        meta = await _tenant_metadata(store)
        with pytest.raises(ConcurrencyError):
            await store.append("s-3", [TenantRenamed(name="a")], expected_version=3, metadata=meta)
        assert await store.read_stream("s-3") == []

    async def test_concurrent_appends_exactly_one_wins(self, store: EventStore) -> None:
        meta = await _tenant_metadata(store)
        results = await asyncio.gather(
            *(
                store.append("s-4", [TenantRenamed(name=str(i))], expected_version=0, metadata=meta)
                for i in range(8)
            ),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, ConcurrencyError) for r in results if isinstance(r, BaseException))
        assert len(await store.read_stream("s-4")) == 1

    async def test_read_all_returns_global_order(self, store: EventStore) -> None:
        meta = await _tenant_metadata(store)
        start = await store.last_position()
        for i in range(5):
            await store.append(
                f"s-5-{i}", [TenantRenamed(name=str(i))], expected_version=0, metadata=meta
            )
        page = await store.read_all(after=start, limit=100)
        assert [r.event for r in page] == [TenantRenamed(name=str(i)) for i in range(5)]
        positions = [r.envelope.position for r in page]
        assert positions == sorted(positions)
        assert await store.last_position() == positions[-1]

    async def test_read_missing_stream_is_empty(self, store: EventStore) -> None:
        assert await store.read_stream(f"nothing-{uuid.uuid4()}") == []


class TestUnstorableText:
    async def test_a_nul_character_is_refused_before_any_write(self, store: EventStore) -> None:
        from metachat.kernel.errors import ValidationError

        if isinstance(store, InMemoryEventStore):
            pytest.skip("PostgreSQL's limit: the in-memory store can hold any string")
        meta = await _tenant_metadata(store)
        with pytest.raises(ValidationError, match="NUL"):
            await store.append(
                "nul-1", [TenantRenamed(name="a\x00b")], expected_version=0, metadata=meta
            )
        await store.append(
            "nul-1", [TenantRenamed(name="a\\u0000b is fine")], expected_version=0, metadata=meta
        )
        assert [r.event for r in await store.read_stream("nul-1")] == [
            TenantRenamed(name="a\\u0000b is fine")
        ]
