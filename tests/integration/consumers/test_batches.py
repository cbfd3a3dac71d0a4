"""Batched consumers (decision 0013) and the `accepts` filter, on the real database and broker.

R7 holds for batches: a batch's tracking rows and effects commit together, a failed batch is
applied again one message at a time, and twice-published or redelivered events count once.
"""

import asyncio
import random
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.analytics import ACTIVITY_CONSUMER
from metachat.analytics.projections import on_event, on_events
from metachat.eventstore.consumer import ConsumerRunner, ConsumerSpec, Outcome
from metachat.eventstore.envelope import Recorded
from metachat.eventstore.relay import to_message
from tests.integration.consumers.support import Harness, daily_activity, make_history, tracked
from tests.integration.consumers.test_idempotency import clean_replay
from tests.waiting import eventually


def _runner(harness: Harness, spec: ConsumerSpec) -> ConsumerRunner:
    return ConsumerRunner(spec, engine=harness.deps.engine, registry=harness.deps.registry)


def _bodies(events: Sequence[Recorded]) -> list[bytes]:
    """The bodies as the relay publishes them."""
    return [to_message(r.envelope).body for r in events]


class TestBatchedRunner:
    async def test_messages_in_hand_share_a_transaction_and_count_once(
        self, harness: Harness
    ) -> None:
        events = await make_history(harness.deps)
        batches: list[int] = []

        async def counting(conn: AsyncConnection, recorded: Sequence[Recorded]) -> None:
            batches.append(len(recorded))
            await on_events(conn, recorded)

        spec = ConsumerSpec(
            name="test.batched_activity",
            binding_keys=("#",),
            handler=on_event,
            batch_handler=counting,
            batch_linger=0.05,
        )
        runner = _runner(harness, spec)
        bodies = _bodies(events)
        # Every event twice, concurrently (the same event may be twice in one batch).
        doubled = bodies + random.Random(3).sample(bodies, len(bodies))
        outcomes = await asyncio.gather(*(runner.process(body) for body in doubled))
        assert outcomes.count(Outcome.APPLIED) == len(events)
        assert outcomes.count(Outcome.DUPLICATE) == len(events)
        assert sum(batches) == len(events)  # each event applied once, in few transactions
        assert len(batches) < len(events)
        assert await tracked(harness.deps.engine, spec.name) == len(events)
        activity = await daily_activity(harness.deps.engine)
        assert activity == await clean_replay(harness)

        # Redelivered later (a lost ack): every one is a duplicate, nothing changes.
        again = await asyncio.gather(*(runner.process(body) for body in bodies))
        assert set(again) == {Outcome.DUPLICATE}
        assert await daily_activity(harness.deps.engine) == activity

    async def test_a_failing_batch_is_applied_one_at_a_time_so_only_the_poison_fails(
        self, harness: Harness
    ) -> None:
        events = await make_history(harness.deps, tenants=1, renames=5)
        poison = events[3].envelope.event_id

        async def one(conn: AsyncConnection, recorded: Recorded) -> None:
            if recorded.envelope.event_id == poison:
                raise RuntimeError("poison")
            await on_event(conn, recorded)

        async def many(conn: AsyncConnection, recorded: Sequence[Recorded]) -> None:
            await on_events(conn, recorded)  # the effect first: the rollback must undo it
            if any(r.envelope.event_id == poison for r in recorded):
                raise RuntimeError("poison in the batch")

        spec = ConsumerSpec(
            name="test.poisoned_batch",
            binding_keys=("#",),
            handler=one,
            batch_handler=many,
            batch_linger=0.05,
        )
        runner = _runner(harness, spec)
        results = await asyncio.gather(
            *(runner.process(body) for body in _bodies(events)), return_exceptions=True
        )
        failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
        assert failed == [3]
        assert results.count(Outcome.APPLIED) == len(events) - 1
        assert await tracked(harness.deps.engine, spec.name) == len(events) - 1
        counted = sum(row[3] for row in await daily_activity(harness.deps.engine))
        assert counted == len(events) - 1

    def test_a_batch_handler_needs_the_one_event_handler(self) -> None:
        with pytest.raises(ValueError, match="one-event handler"):
            ConsumerSpec(
                name="test.x", binding_keys=("#",), reaction=_react, batch_handler=on_events
            )


async def _react(_: Recorded) -> None:
    return None


class TestBatchedUnderTheBroker:
    async def test_twice_published_events_with_requeues_count_once(self, harness: Harness) -> None:
        events = await make_history(harness.deps)
        failed_once: set[int] = set()

        async def flaky(conn: AsyncConnection, recorded: Sequence[Recorded]) -> None:
            await on_events(conn, recorded)
            # A batch holding a position divisible by 4 fails once after its effect: the
            # whole batch rolls back and its messages are applied one at a time.
            marks = {r.envelope.position for r in recorded if r.envelope.position % 4 == 0}
            if marks - failed_once:
                failed_once.update(marks)
                raise RuntimeError("fails after the effect")

        spec = ConsumerSpec(
            name="test.flaky_batches",
            binding_keys=("#",),
            handler=on_event,
            batch_handler=flaky,
            batch_linger=0.02,
        )
        envelopes = [r.envelope for r in events]
        async with harness.running([spec]):
            await harness.publish(envelopes + random.Random(5).sample(envelopes, len(envelopes)))
            await eventually(lambda: _drained(harness, spec.name, len(events)))
        assert failed_once
        assert await harness.depth(harness.dlq(spec.name)) == 0
        assert await tracked(harness.deps.engine, spec.name) == len(events)
        assert await daily_activity(harness.deps.engine) == await clean_replay(harness)


async def _drained(harness: Harness, consumer: str, count: int) -> bool:
    if await tracked(harness.deps.engine, consumer) < count:
        return False
    return await harness.depth(harness.queue(consumer)) == 0


class TestAccepts:
    async def test_events_it_does_not_accept_are_acked_without_a_tracking_row(
        self, harness: Harness
    ) -> None:
        events = await make_history(harness.deps, tenants=2, renames=2)
        seen: list[str] = []

        async def handler(_: AsyncConnection, recorded: Recorded) -> None:
            seen.append(recorded.envelope.type)

        spec = ConsumerSpec(
            name="test.renames_only",
            binding_keys=("#",),
            handler=handler,
            accepts=lambda r: r.envelope.type == "tenants.tenant_renamed",
        )
        runner = _runner(harness, spec)
        outcomes = [await runner.process(body) for body in _bodies(events)]
        renames = [r for r in events if r.envelope.type == "tenants.tenant_renamed"]
        assert outcomes.count(Outcome.APPLIED) == len(renames) == 4
        assert outcomes.count(Outcome.IGNORED) == len(events) - len(renames)
        assert seen == ["tenants.tenant_renamed"] * len(renames)
        assert await tracked(harness.deps.engine, spec.name) == len(renames)

        async with harness.running([spec]):
            await harness.publish(r.envelope for r in events)
            await eventually(lambda: _queue_empty(harness, spec.name))
        assert await harness.depth(harness.dlq(spec.name)) == 0
        assert await tracked(harness.deps.engine, spec.name) == len(renames)  # duplicates


async def _queue_empty(harness: Harness, consumer: str) -> bool:
    return await harness.depth(harness.queue(consumer)) == 0


class TestNoAccessLines:
    async def test_faststream_prints_no_line_per_delivery(
        self, harness: Harness, capfd: pytest.CaptureFixture[str]
    ) -> None:
        events = await make_history(harness.deps, tenants=1, renames=2)
        async with harness.running([ACTIVITY_CONSUMER]):
            await harness.publish(r.envelope for r in events)
            await eventually(lambda: _tracked_all(harness, len(events)))
        out, err = capfd.readouterr()
        for line in (out + err).splitlines():
            assert not line.rstrip().endswith(("Received", "Processed")), line


async def _tracked_all(harness: Harness, count: int) -> bool:
    return await tracked(harness.deps.engine, ACTIVITY_CONSUMER.name) >= count
