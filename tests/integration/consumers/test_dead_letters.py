"""R8 and R9 on the real broker: bounded redelivery into the DLQ, listing, and re-driving by id."""

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import aio_pika
import msgspec
import pytest
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.cli.dlq import DeadLetter, describe, list_dead_letters, redrive, select
from metachat.cli.main import cli
from metachat.eventstore.consumer import ConsumerSpec, dead_letter_exchange_name
from metachat.eventstore.envelope import Recorded
from metachat.eventstore.relay import to_message
from tests.integration.consumers.conftest import MakeHarness
from tests.integration.consumers.support import Harness, make_history, tracked
from tests.waiting import eventually


class Poisoned:
    """A consumer whose handler fails for chosen event ids, counting every call per event."""

    def __init__(self, name: str) -> None:
        self.calls: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.poison: set[str] = set()
        self.spec = ConsumerSpec(name=name, binding_keys=("#",), handler=self.handle)

    async def handle(self, _conn: AsyncConnection, recorded: Recorded) -> None:
        event_id = str(recorded.envelope.event_id)
        self.calls[event_id] += 1
        if event_id in self.poison:
            raise RuntimeError("poison")
        self.applied[event_id] += 1


async def _dlq_holds(harness: Harness, consumer: str, count: int) -> bool:
    return await harness.depth(harness.dlq(consumer)) == count


class TestBoundedRedelivery:
    @pytest.mark.parametrize("limit", [3, 5])
    async def test_poison_dead_letters_after_exactly_n_deliveries(
        self, make_harness: MakeHarness, limit: int
    ) -> None:
        harness = await make_harness(delivery_limit=limit, prefetch=4)
        events = await make_history(harness.deps, tenants=2, renames=4)
        consumer = Poisoned("test.poisoned")
        poison = events[3].envelope
        consumer.poison.add(str(poison.event_id))
        async with harness.running([consumer.spec]):
            await harness.publish(r.envelope for r in events)
            await eventually(lambda: _dlq_holds(harness, consumer.spec.name, 1))
            await eventually(
                lambda: _tracked_at_least(harness, consumer.spec.name, len(events) - 1)
            )
        assert consumer.calls[str(poison.event_id)] == limit
        others = [str(r.envelope.event_id) for r in events if r.envelope != poison]
        assert all(consumer.applied[e] == 1 for e in others)  # the others kept flowing
        [letter] = await list_dead_letters(harness.settings, consumer.spec.name)
        assert letter.event_id == str(poison.event_id)
        assert letter.event_type == poison.type
        assert letter.tenant_id == str(poison.tenant_id)
        assert letter.position == poison.position
        assert letter.reason == "delivery_limit"
        assert letter.death_count == 1
        assert letter.died_in == harness.queue(consumer.spec.name)
        assert letter.first_death_at is not None
        assert abs(letter.first_death_at - datetime.now(UTC)) < timedelta(hours=1)

    async def test_listing_does_not_consume(self, make_harness: MakeHarness) -> None:
        harness = await make_harness(delivery_limit=2)
        events = await make_history(harness.deps, tenants=1, renames=2)
        consumer = Poisoned("test.listed")
        consumer.poison |= {str(r.envelope.event_id) for r in events}
        async with harness.running([consumer.spec]):
            await harness.publish(r.envelope for r in events)
            await eventually(lambda: _dlq_holds(harness, consumer.spec.name, len(events)))
        first = await list_dead_letters(harness.settings, consumer.spec.name)
        second = await list_dead_letters(harness.settings, consumer.spec.name)
        assert (
            sorted(_ids(first))
            == sorted(_ids(second))
            == sorted(str(r.envelope.event_id) for r in events)
        )
        assert await harness.depth(harness.dlq(consumer.spec.name)) == len(events)


def _ids(letters: list[DeadLetter]) -> list[str]:
    return [letter.event_id or "" for letter in letters]


async def _tracked_at_least(harness: Harness, consumer: str, count: int) -> bool:
    return await tracked(harness.deps.engine, consumer) >= count


async def _dead_letter_copy(harness: Harness, consumer: str, recorded: Recorded) -> None:
    """Put a copy of an event into the consumer's DLQ the way the broker would route it."""
    async with await aio_pika.connect(harness.settings.amqp.url) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        dlx = await channel.get_exchange(dead_letter_exchange_name(harness.settings))
        await dlx.publish(
            to_message(recorded.envelope), routing_key=harness.queue(consumer), mandatory=True
        )


async def _peek(harness: Harness, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    async with await aio_pika.connect(harness.settings.amqp.url) as connection:
        channel = await connection.channel()
        source = await channel.get_queue(queue)
        taken = []
        while (message := await source.get(no_ack=False, fail=False)) is not None:
            taken.append(message)
        await channel.close()  # hands them back
    return taken


def _cli(harness: Harness, *args: str) -> str:
    settings = harness.settings
    env = {
        "METACHAT_ENV": "test",
        "METACHAT_LOG_JSON": "false",
        "METACHAT_AMQP_URL": settings.amqp.url,
        "METACHAT_AMQP__EXCHANGE": settings.amqp.exchange,
        "METACHAT_AMQP__QUEUE_PREFIX": settings.amqp.queue_prefix,
    }
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


class TestRedrive:
    async def test_redrive_keeps_event_id_and_applies_exactly_once(self, harness: Harness) -> None:
        events = await make_history(harness.deps, tenants=1, renames=3)
        consumer = Poisoned("test.redriven")
        name = consumer.spec.name
        bad, good = events[2], events[3]
        consumer.poison.add(str(bad.envelope.event_id))
        async with harness.running([consumer.spec]):
            await harness.publish(r.envelope for r in events)
            await eventually(lambda: _dlq_holds(harness, name, 1))
            await eventually(lambda: _tracked_at_least(harness, name, len(events) - 1))
        # A stray copy of an already applied event in the DLQ too (as after a crash between a
        # redrive's publish and its ack): re-driving it must change nothing.
        await _dead_letter_copy(harness, name, good)
        consumer.poison.clear()

        assert await redrive(harness.settings, name) == 2
        assert await harness.depth(harness.dlq(name)) == 0
        copies = {m.message_id: m for m in await _peek(harness, harness.queue(name))}
        assert set(copies) == {str(bad.envelope.event_id), str(good.envelope.event_id)}
        redriven = copies[str(bad.envelope.event_id)]
        original = to_message(bad.envelope)
        assert redriven.body == original.body
        assert redriven.headers["x-event-type"] == bad.envelope.type
        assert redriven.headers["x-position"] == bad.envelope.position
        assert describe(redriven).reason == "delivery_limit"  # the death history is kept
        assert describe(redriven).death_count == 1

        async with harness.running([consumer.spec]):
            await eventually(lambda: _tracked_at_least(harness, name, len(events)))
        assert consumer.applied[str(bad.envelope.event_id)] == 1
        assert consumer.applied[str(good.envelope.event_id)] == 1  # the stray copy did nothing
        assert all(n == 1 for n in consumer.applied.values())
        assert await harness.depth(harness.queue(name)) == 0

    async def test_cli_lists_and_redrives_by_id(self, harness: Harness) -> None:
        events = await make_history(harness.deps, tenants=1, renames=1)
        consumer = Poisoned("test.cli")
        name = consumer.spec.name
        first, second = events[0].envelope, events[2].envelope
        consumer.poison |= {str(first.event_id), str(second.event_id)}
        async with harness.running([consumer.spec]):
            await harness.publish(r.envelope for r in events)
            await eventually(lambda: _dlq_holds(harness, name, 2))

        listed = await asyncio.to_thread(_cli, harness, "dlq", "list", name, "--json")
        lines = [msgspec.json.decode(line, type=DeadLetter) for line in listed.splitlines()]
        assert sorted(line.event_id or "" for line in lines) == sorted(
            [str(first.event_id), str(second.event_id)]
        )
        assert {line.reason for line in lines} == {"delivery_limit"}
        human = await asyncio.to_thread(_cli, harness, "dlq", "list", name)
        assert str(first.event_id) in human
        assert "tenants.tenant_created" in human

        out = await asyncio.to_thread(
            _cli, harness, "dlq", "redrive", name, "--id", str(first.event_id)
        )
        assert "re-drove 1 message(s)" in out
        left = await list_dead_letters(harness.settings, name)
        assert _ids(left) == [str(second.event_id)]
        assert [m.message_id for m in await _peek(harness, harness.queue(name))] == [
            str(first.event_id)
        ]

    async def test_redrive_by_time_range(self, harness: Harness) -> None:
        events = await make_history(harness.deps, tenants=1, renames=1)
        consumer = Poisoned("test.ranged")
        consumer.poison |= {str(r.envelope.event_id) for r in events}
        async with harness.running([consumer.spec]):
            await harness.publish(r.envelope for r in events)
            await eventually(lambda: _dlq_holds(harness, consumer.spec.name, len(events)))
        future = datetime.now(UTC) + timedelta(hours=1)
        assert await redrive(harness.settings, consumer.spec.name, chosen=select(since=future)) == 0
        past = datetime.now(UTC) - timedelta(hours=1)
        sent = await redrive(harness.settings, consumer.spec.name, chosen=select(since=past))
        assert sent == len(events)
