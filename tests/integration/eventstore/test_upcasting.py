"""Schema evolution: an event stored under an old version is upcast on read, never rewritten."""

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import text

from metachat.database.engine import create_engine
from metachat.eventstore.envelope import Event, Metadata
from metachat.eventstore.postgres import PostgresEventStore
from metachat.eventstore.registry import EventRegistry
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7


class GreetingV1(Event, frozen=True, kw_only=True):
    type = "test.greeted"
    version = 1
    name: str


class Greeting(Event, frozen=True, kw_only=True):
    """Version 2 splits the name and adds the language."""

    type = "test.greeted"
    version = 2
    first_name: str
    last_name: str
    language: str


def registry_v2() -> EventRegistry:
    registry = EventRegistry([Greeting])

    @registry.upcaster("test.greeted", from_version=1)
    def split_name(payload: dict[str, object]) -> dict[str, object]:
        first, _, last = str(payload["name"]).partition(" ")
        return {"first_name": first, "last_name": last, "language": "en"}

    return registry


@pytest_asyncio.fixture
async def engine(new_database) -> AsyncIterator[object]:
    engine = create_engine(new_database(), pool_size=2)
    yield engine
    await engine.dispose()


async def test_old_events_are_upcast_on_read_and_left_as_stored(engine) -> None:
    tenant_id = uuid7()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"), {"t": tenant_id}
        )
    meta = Metadata(tenant_id=tenant_id, actor=Actor.system(), correlation_id=uuid7())
    old_code = PostgresEventStore(engine, EventRegistry([GreetingV1]))
    await old_code.append(
        "greeting-1", [GreetingV1(name="Ada Lovelace")], expected_version=0, metadata=meta
    )

    new_code = PostgresEventStore(engine, registry_v2())
    await new_code.append(
        "greeting-1",
        [Greeting(first_name="Alan", last_name="Turing", language="en")],
        expected_version=1,
        metadata=meta,
    )
    stream = await new_code.read_stream("greeting-1")
    assert [r.event for r in stream] == [
        Greeting(first_name="Ada", last_name="Lovelace", language="en"),
        Greeting(first_name="Alan", last_name="Turing", language="en"),
    ]
    assert [r.envelope.schema_version for r in stream] == [1, 2]
    via_reader = await new_code.read_all(after=0, limit=10)
    assert [r.event for r in via_reader] == [r.event for r in stream]
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT payload, schema_version FROM eventstore.events ORDER BY position")
            )
        ).all()
    assert stored[0] == ({"name": "Ada Lovelace"}, 1)


async def test_the_store_refuses_updates_and_deletes(engine) -> None:
    import pytest
    from sqlalchemy.exc import DBAPIError

    tenant_id = uuid7()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"), {"t": tenant_id}
        )
    meta = Metadata(tenant_id=tenant_id, actor=Actor.system(), correlation_id=uuid7())
    store = PostgresEventStore(engine, registry_v2())
    await store.append(
        "s",
        [Greeting(first_name="a", last_name="b", language="en")],
        expected_version=0,
        metadata=meta,
    )
    for statement in (
        "UPDATE eventstore.events SET payload = '{}'::jsonb",
        "DELETE FROM eventstore.events",
        "TRUNCATE eventstore.events CASCADE",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    assert len(await store.read_stream("s")) == 1
