"""R13: a side-effecting consumer never re-emits history, and acts on every new event."""

import asyncio
import json
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.consumer import ConsumerSpec, establish_mark
from metachat.eventstore.envelope import Metadata, Recorded
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants.events import TenantRenamed
from tests.integration.consumers.conftest import MakeHarness
from tests.integration.consumers.support import Harness, make_history
from tests.waiting import eventually


class HttpSink:
    """A fake webhook receiver at the HTTP boundary, recording each delivery it gets."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.client = httpx.AsyncClient(
            transport=httpx.MockTransport(self._receive), base_url="https://sink.example"
        )

    def _receive(self, request: httpx.Request) -> httpx.Response:
        self.received.append(json.loads(request.content))
        return httpx.Response(204)

    def spec(self) -> ConsumerSpec:
        async def deliver(conn: AsyncConnection, recorded: Recorded) -> None:
            env = recorded.envelope
            response = await self.client.post(
                "/hook",
                json={"event_id": str(env.event_id), "type": env.type},
                headers={"webhook-id": str(env.event_id)},
            )
            response.raise_for_status()

        return ConsumerSpec(
            name="test.webhooks", binding_keys=("#",), handler=deliver, side_effects=True
        )

    def ids(self) -> set[str]:
        return {item["event_id"] for item in self.received}


async def _mark(harness: Harness, consumer: str) -> int | None:
    async with harness.deps.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT start_position FROM eventstore.consumer_marks WHERE consumer = :c"),
            {"c": consumer},
        )


def _ids(events: list[Recorded]) -> set[str]:
    return {str(r.envelope.event_id) for r in events}


class TestReplayGate:
    async def test_history_is_not_re_emitted_and_new_events_are(
        self, make_harness: MakeHarness
    ) -> None:
        # Prefetch 1: messages are handled one at a time in queue order, so once the sink has
        # seen the new events, every history message published before them was handled too.
        harness = await make_harness(prefetch=1)
        history = await make_history(harness.deps)
        sink = HttpSink()
        spec = sink.spec()
        async with harness.running([spec]):
            mark = await _mark(harness, spec.name)
            assert mark == history[-1].envelope.position
            await harness.publish(r.envelope for r in history)  # history replayed by the broker
            new = await make_history(harness.deps, tenants=1, renames=2)
            await harness.publish(r.envelope for r in new)
            await eventually(lambda: _sink_has(sink, len(new)))
        assert sink.ids() == _ids(new)
        assert len(sink.received) == len(new)

        # A restart keeps the first mark: the events acted on before are not history now, but
        # tracking keeps them from being sent twice.
        async with harness.running([spec]):
            assert await _mark(harness, spec.name) == mark
            more = await make_history(harness.deps, tenants=1, renames=0)
            await harness.publish(r.envelope for r in [*history, *new, *more])
            await eventually(lambda: _sink_has(sink, len(new) + len(more)))
            await eventually(lambda: _queue_empty(harness, spec.name))
        assert sink.ids() == _ids(new) | _ids(more)
        assert len(sink.received) == len(new) + len(more)

    async def test_mark_waits_for_a_transaction_holding_a_lower_position(
        self, harness: Harness
    ) -> None:
        engine, store = harness.deps.engine, harness.deps.store
        meta = await _tenant(harness)
        async with engine.connect() as open_conn:
            await open_conn.begin()
            [held] = await store.append(
                f"s-{uuid.uuid4()}",
                [TenantRenamed(name="slow")],
                expected_version=0,
                metadata=meta,
                conn=open_conn,
            )
            [later] = await store.append(
                f"s-{uuid.uuid4()}", [TenantRenamed(name="fast")], expected_version=0, metadata=meta
            )
            assert held.envelope.position < later.envelope.position
            marking = asyncio.create_task(establish_mark(engine, "test.gate", poll=0.01))
            await asyncio.sleep(0.5)
            # A mark taken now would let the open transaction commit an event below it later.
            assert not marking.done()
            await open_conn.commit()
        mark = await marking
        assert mark >= later.envelope.position
        assert await establish_mark(engine, "test.gate") == mark  # recorded once

    async def test_mark_passes_a_rolled_back_gap(self, harness: Harness) -> None:
        engine, store = harness.deps.engine, harness.deps.store
        meta = await _tenant(harness)
        async with engine.connect() as open_conn:
            await open_conn.begin()
            await store.append(
                f"s-{uuid.uuid4()}",
                [TenantRenamed(name="doomed")],
                expected_version=0,
                metadata=meta,
                conn=open_conn,
            )
            marking = asyncio.create_task(establish_mark(engine, "test.gate_dead", poll=0.01))
            await asyncio.sleep(0.2)
            await open_conn.rollback()
        assert await marking >= 1


async def _tenant(harness: Harness) -> Metadata:
    tenant_id = uuid7()
    async with harness.deps.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"), {"t": tenant_id}
        )
    return Metadata(tenant_id=tenant_id, actor=Actor.system(), correlation_id=uuid7())


async def _sink_has(sink: HttpSink, count: int) -> bool:
    return len(sink.received) >= count


async def _queue_empty(harness: Harness, consumer: str) -> bool:
    return await harness.depth(harness.queue(consumer)) == 0
