"""R7: duplicates, requeues and a lost ack change nothing; the read model equals one clean replay."""

import asyncio
import random
from collections import Counter
from datetime import date

import aio_pika
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.analytics import ACTIVITY_CONSUMER, list_daily_activity
from metachat.analytics.projections import on_event
from metachat.eventstore.consumer import ConsumerRunner, ConsumerSpec, Outcome
from metachat.eventstore.envelope import Recorded
from metachat.worker.relay_role import run_relay
from tests.integration.consumers.support import (
    Harness,
    all_events,
    daily_activity,
    make_history,
    tracked,
)
from tests.waiting import eventually


async def clean_replay(harness: Harness) -> list[tuple[object, ...]]:
    """The read model as one clean pass over the event store would build it (then rolled back)."""
    engine = harness.deps.engine
    events = await all_events(harness.deps)
    async with engine.connect() as conn:
        await conn.execute(text("DELETE FROM analytics.daily_activity"))
        for recorded in events:
            await on_event(conn, recorded)
        rows = await conn.execute(
            text(
                "SELECT tenant_id, day, event_type, count FROM analytics.daily_activity"
                " ORDER BY tenant_id, day, event_type"
            )
        )
        replayed = [tuple(row) for row in rows]
        await conn.rollback()
    return replayed


class TestActivityEndToEnd:
    async def test_relay_to_read_model(self, harness: Harness) -> None:
        events = await make_history(harness.deps, tenants=2, renames=3)
        stop_relay = asyncio.Event()
        async with harness.running([ACTIVITY_CONSUMER]):
            relay = asyncio.create_task(run_relay(harness.deps, stop_relay))
            await eventually(
                lambda: _at_least(harness, ACTIVITY_CONSUMER.name, len(events)), within=60
            )
            stop_relay.set()
            await relay
        expected = Counter((r.envelope.tenant_id, r.envelope.type) for r in events)
        async with harness.deps.engine.connect() as conn:
            for tenant_id in {tenant for tenant, _ in expected}:
                listed = await list_daily_activity(
                    conn, tenant_id=tenant_id, since=date(2000, 1, 1)
                )
                got = {item.event_type: item.count for item in listed}
                assert got == {t: n for (tid, t), n in expected.items() if tid == tenant_id}
        assert await daily_activity(harness.deps.engine) == await clean_replay(harness)


async def _at_least(harness: Harness, consumer: str, count: int) -> bool:
    return await tracked(harness.deps.engine, consumer) >= count


class TestDuplicatesAndRequeues:
    async def test_twice_published_and_requeued_events_count_once(self, harness: Harness) -> None:
        events = await make_history(harness.deps)
        failed_once: set[str] = set()

        async def flaky(conn: AsyncConnection, recorded: Recorded) -> None:
            await on_event(conn, recorded)
            event_id = str(recorded.envelope.event_id)
            # Every third event fails once *after* its effect: the rollback must undo it.
            if recorded.envelope.position % 3 == 0 and event_id not in failed_once:
                failed_once.add(event_id)
                raise RuntimeError("fails after the effect")

        spec = ConsumerSpec(name="test.flaky_activity", binding_keys=("#",), handler=flaky)
        envelopes = [r.envelope for r in events]
        shuffled = random.Random(7).sample(envelopes, len(envelopes))
        async with harness.running([spec]):
            await harness.publish(envelopes + shuffled)
            await eventually(lambda: _drained(harness, spec.name, len(events)))
        assert failed_once  # requeues did happen
        assert await harness.depth(harness.queue(spec.name)) == 0  # everything was acked
        assert await harness.depth(harness.dlq(spec.name)) == 0
        assert await tracked(harness.deps.engine, spec.name) == len(events)
        assert await daily_activity(harness.deps.engine) == await clean_replay(harness)


async def _drained(harness: Harness, consumer: str, count: int) -> bool:
    if await tracked(harness.deps.engine, consumer) < count:
        return False
    return await harness.depth(harness.queue(consumer)) == 0


class TestAckLostAfterEffect:
    async def test_redelivery_after_committed_effect_is_a_duplicate(self, harness: Harness) -> None:
        events = await make_history(harness.deps)
        async with harness.running([ACTIVITY_CONSUMER]):
            pass  # declares the topology
        await harness.publish(r.envelope for r in events)
        runner = ConsumerRunner(
            ACTIVITY_CONSUMER, engine=harness.deps.engine, registry=harness.deps.registry
        )
        # Apply every message, then "crash" before acking: the connection closes with all of
        # them unacked, so the broker redelivers every one.
        async with await aio_pika.connect(harness.settings.amqp.url) as connection:
            channel = await connection.channel()
            queue = await channel.get_queue(harness.queue(ACTIVITY_CONSUMER.name))
            outcomes = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                outcomes.append(await runner.process(message.body))
        assert outcomes == [Outcome.APPLIED] * len(events)
        applied = await daily_activity(harness.deps.engine)
        assert applied == await clean_replay(harness)

        async with harness.running([ACTIVITY_CONSUMER]):
            await eventually(lambda: _queue_empty(harness, ACTIVITY_CONSUMER.name))
        assert await harness.depth(harness.queue(ACTIVITY_CONSUMER.name)) == 0  # all acked
        assert await daily_activity(harness.deps.engine) == applied
        assert await tracked(harness.deps.engine, ACTIVITY_CONSUMER.name) == len(events)


async def _queue_empty(harness: Harness, consumer: str) -> bool:
    return await harness.depth(harness.queue(consumer)) == 0


class TestQueuesExistBeforeTheRelayPublishes:
    async def test_events_relayed_while_the_consumers_role_is_down_wait_in_its_queue(
        self, harness: Harness
    ) -> None:
        events = await make_history(harness.deps, tenants=1, renames=2)
        harness.consumers.add(ACTIVITY_CONSUMER.name)  # its queues are cleaned up with the harness
        stop_relay = asyncio.Event()
        relay = asyncio.create_task(run_relay(harness.deps, stop_relay))
        try:

            async def drained() -> bool:
                async with harness.deps.engine.connect() as conn:
                    return await conn.scalar(text("SELECT count(*) FROM eventstore.outbox")) == 0

            await eventually(drained, within=60)
        finally:
            stop_relay.set()
            await relay
        async with harness.running([ACTIVITY_CONSUMER]):
            await eventually(
                lambda: _at_least(harness, ACTIVITY_CONSUMER.name, len(events)), within=60
            )
        assert await tracked(harness.deps.engine, ACTIVITY_CONSUMER.name) == len(events)
