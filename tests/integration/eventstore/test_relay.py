"""R5, R15, R16 and leadership: the relay against the real PostgreSQL and RabbitMQ."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest_asyncio
import structlog
from sqlalchemy import text

from metachat.bootstrap import Deps, build
from metachat.eventstore.envelope import Envelope, Recorded
from metachat.eventstore.relay import Relay, outbox_stats
from metachat.settings import Settings
from metachat.tenants.events import TenantCreated, TenantRenamed
from tests.conftest import make_settings
from tests.integration.eventstore.relay_support import Sink, a_tenant, outbox_rows
from tests.waiting import eventually


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=4)
    yield built
    await built.close()


@contextlib.asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def a_relay(deps: Deps, **options: float) -> Relay:
    return Relay(deps.settings, database_url=deps.database_url, **options)


async def append_some(deps: Deps, count: int, *, streams: int = 1) -> list[Recorded]:
    meta = await a_tenant(deps.engine)
    recorded: list[Recorded] = []
    for s in range(streams):
        stream = f"tenant-{uuid.uuid4()}"
        first = await deps.store.append(
            stream,
            [TenantCreated(tenant_id=meta.tenant_id, name=f"t{s}")],
            expected_version=0,
            metadata=meta,
        )
        rest = await deps.store.append(
            stream,
            [TenantRenamed(name=f"n{i}") for i in range(count - 1)],
            expected_version=1,
            metadata=meta,
        )
        recorded += first + rest
    return recorded


def amqp(settings: Settings) -> tuple[str, str]:
    return settings.amqp.url, settings.amqp.exchange


class TestPublishing:
    async def test_messages_follow_the_public_contract(self, deps: Deps) -> None:
        async with Sink(*amqp(deps.settings)) as sink:
            recorded = await append_some(deps, 3)
            async with running(a_relay(deps)):
                await eventually(lambda: _has(sink, 3))
        by_id = {m.message_id: m for m in sink.messages}
        for rec in recorded:
            env = rec.envelope
            message = by_id[str(env.event_id)]
            assert message.routing_key == f"{env.tenant_id}.{env.type}"
            assert message.content_type == "application/json"
            assert message.delivery_mode == 2  # persistent
            assert message.headers == {
                "x-tenant-id": str(env.tenant_id),
                "x-event-type": env.type,
                "x-stream-id": env.stream_id,
                "x-stream-version": env.stream_version,
                "x-position": env.position,
                "x-correlation-id": str(env.correlation_id),
            }
            assert msgspec.json.decode(message.body, type=Envelope) == env
        assert [m.headers["x-stream-version"] for m in sink.messages] == [1, 2, 3]
        assert await outbox_rows(deps.engine) == []

    async def test_outbox_drains_to_empty_and_heartbeat_counts(self, deps: Deps) -> None:
        async with Sink(*amqp(deps.settings)) as sink:
            recorded = await append_some(deps, 300, streams=10)
            relay = a_relay(deps)
            async with running(relay):
                await eventually(lambda: _has(sink, len(recorded)))
                await eventually(lambda: _outbox_empty(deps))
        assert sink.ids() == {str(r.envelope.event_id) for r in recorded}
        async with deps.engine.connect() as conn:
            stats = await outbox_stats(conn)
            beat = (
                await conn.execute(
                    text("SELECT holder, processed FROM eventstore.heartbeats WHERE name = 'relay'")
                )
            ).one()
        assert (stats.depth, stats.failing) == (0, 0)
        assert beat.processed == len(recorded)
        assert beat.holder == relay.holder


class TestUnroutable:
    async def test_unbound_exchange_keeps_rows_and_alerts_then_delivers_once_bound(
        self, deps: Deps
    ) -> None:
        relay = a_relay(deps, retry_base=0.2, retry_cap=1.0)
        recorded = await append_some(deps, 3)
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as logs:
            async with running(relay):
                await eventually(lambda: _all_attempted(deps, 3))
                rows = await outbox_rows(deps.engine)
                assert [r.position for r in rows] == [r.envelope.position for r in recorded]
                assert all(r.attempts > 0 and r.last_error.startswith("unroutable") for r in rows)
                assert relay.stats.unroutable >= 3
                async with Sink(*amqp(deps.settings)) as sink:
                    await eventually(lambda: _has(sink, 3))
                    await eventually(lambda: _outbox_empty(deps))
        alerts = [line for line in logs if line["event"] == "relay_unroutable"]
        assert alerts
        assert all(line["log_level"] == "error" for line in alerts)
        assert {line["correlation_id"] for line in alerts} == {
            str(recorded[0].envelope.correlation_id)
        }
        assert [m.message_id for m in sink.messages] == [str(r.envelope.event_id) for r in recorded]


class TestLeadership:
    async def test_one_relay_publishes_and_the_standby_takes_over(self, deps: Deps) -> None:
        first, second = a_relay(deps), a_relay(deps)
        async with Sink(*amqp(deps.settings)) as sink:
            stop_first = asyncio.Event()
            first_task = asyncio.create_task(first.run(stop_first))
            await eventually(lambda: _leading(first))
            async with running(second):
                before = await append_some(deps, 50, streams=4)
                await eventually(lambda: _has(sink, len(before)))
                # The sink can hold a message before its publisher has read the confirm.
                await eventually(lambda: _published(first, len(before)))
                assert (second.stats.published, second.stats.leading) == (0, False)
                # Kill the leader: cancelling closes its lock connection, as a dead process would.
                first_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await first_task
                after = await append_some(deps, 50, streams=4)
                await eventually(lambda: _has(sink, len(before) + len(after)))
                await eventually(lambda: _outbox_empty(deps))
                await eventually(lambda: _published(second, len(after)))
                assert second.stats.leading
                assert first.stats.published == len(before)  # nothing twice
        assert sink.ids() == {str(r.envelope.event_id) for r in before + after}

    async def test_a_leader_whose_lock_session_dies_stops_and_one_leader_remains(
        self, deps: Deps
    ) -> None:
        first, second = a_relay(deps), a_relay(deps)
        async with Sink(*amqp(deps.settings)) as sink, running(first), running(second):
            await eventually(lambda: _any_leading(first, second))
            leader = first if first.stats.leading else second
            async with deps.engine.begin() as conn:
                # The relay lease is the only advisory lock taken in this test's database.
                killed = await conn.scalar(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND granted "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                )
            assert killed == 1
            await eventually(lambda: _reconnected(leader))
            recorded = await append_some(deps, 40, streams=3)
            await eventually(lambda: _has(sink, len(recorded)))
            await eventually(lambda: _outbox_empty(deps))
            assert [first.stats.leading, second.stats.leading].count(True) == 1
        assert sink.ids() == {str(r.envelope.event_id) for r in recorded}


async def _any_leading(*relays: Relay) -> bool:
    return any(relay.stats.leading for relay in relays)


async def _reconnected(relay: Relay) -> bool:
    return relay.stats.reconnects > 0


async def _has(sink: Sink, count: int) -> bool:
    return len(sink.ids()) >= count


async def _published(relay: Relay, count: int) -> bool:
    """The relay counted `count` confirmed events; more than that is a failure at once."""
    assert relay.stats.published <= count, relay.stats
    return relay.stats.published == count


async def _outbox_empty(deps: Deps) -> bool:
    return await outbox_rows(deps.engine) == []


async def _all_attempted(deps: Deps, count: int) -> bool:
    rows = await outbox_rows(deps.engine)
    return len(rows) == count and all(r.attempts > 0 for r in rows)


async def _leading(relay: Relay) -> bool:
    return relay.stats.leading
