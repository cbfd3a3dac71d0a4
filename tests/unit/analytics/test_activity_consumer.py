"""Unit tests: the activity effect's key, the consumer spec, its topology and message decoding."""

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, ClassVar

import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.analytics import ACTIVITY_CONSUMER
from metachat.analytics.projections import activity_key
from metachat.database.engine import create_engine
from metachat.eventstore.consumer import (
    DEAD_LETTER_QUEUE_DELIVERY_LIMIT,
    ConsumerRunner,
    ConsumerSpec,
    topology,
)
from metachat.eventstore.envelope import Envelope, Event, Recorded
from metachat.eventstore.registry import EventRegistry
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.settings import AmqpSettings, ConsumerSettings, Settings
from metachat.worker.broker import consumer_queue, dead_letter_queue

SETTINGS = Settings(
    amqp=AmqpSettings(exchange="x.events", queue_prefix="pre."),
    consumer=ConsumerSettings(delivery_limit=4, prefetch=8),
)


def an_envelope(
    *, type_: str = "tenants.tenant_renamed", occurred_at: datetime | None = None, **overrides: Any
) -> Envelope:
    fields: dict[str, Any] = {
        "event_id": uuid7(),
        "type": type_,
        "schema_version": 1,
        "tenant_id": uuid7(),
        "stream_id": "tenant-1",
        "stream_version": 2,
        "position": 10,
        "occurred_at": occurred_at or datetime.now(UTC),
        "correlation_id": uuid7(),
        "causation_id": None,
        "actor": Actor.system(),
        "payload": {"name": "Acme"},
    }
    return Envelope(**(fields | overrides))


async def _noop(conn: AsyncConnection, recorded: Recorded) -> None:
    return None


class TestActivityKey:
    def test_counts_by_tenant_utc_day_and_type(self) -> None:
        env = an_envelope(occurred_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
        recorded = Recorded(envelope=env, event=Note(text="x"))
        assert activity_key(recorded) == (env.tenant_id, date(2026, 3, 1), env.type)

    def test_day_is_the_utc_day_not_the_local_one(self) -> None:
        late_evening = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
        recorded = Recorded(envelope=an_envelope(occurred_at=late_evening), event=Note(text="x"))
        assert activity_key(recorded)[1] == date(2026, 3, 2)


class TestActivityConsumerSpec:
    def test_is_bound_to_every_event_without_side_effects(self) -> None:
        assert ACTIVITY_CONSUMER.name == "analytics.activity"
        assert ACTIVITY_CONSUMER.binding_keys == ("#",)
        assert ACTIVITY_CONSUMER.side_effects is False

    def test_rejects_a_nameless_or_unbound_spec(self) -> None:
        with pytest.raises(ValueError, match="name"):
            ConsumerSpec(name="bad name", binding_keys=("#",), handler=_noop)
        with pytest.raises(ValueError, match="binding key"):
            ConsumerSpec(name="x.y", binding_keys=(), handler=_noop)


class TestTopology:
    def test_names_carry_the_prefix(self) -> None:
        topo = topology(ACTIVITY_CONSUMER, SETTINGS)
        assert topo.exchange == "x.events"
        assert topo.queue == "pre.analytics.activity"
        assert topo.dead_letter_queue == "pre.analytics.activity.dlq"
        assert topo.dead_letter_exchange == "pre.metachat.dlx"

    def test_queue_has_explicit_limit_and_safe_dead_lettering(self) -> None:
        args = topology(ACTIVITY_CONSUMER, SETTINGS).queue_arguments
        assert args == {
            "x-queue-type": "quorum",
            "x-delivery-limit": 3,  # 4 deliveries: RabbitMQ counts the returns after the first
            "x-dead-letter-exchange": "pre.metachat.dlx",
            "x-dead-letter-routing-key": "pre.analytics.activity",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def test_dead_letter_queue_is_quorum_with_an_explicit_limit(self) -> None:
        args = topology(ACTIVITY_CONSUMER, SETTINGS).dead_letter_arguments
        assert args == {
            "x-queue-type": "quorum",
            "x-delivery-limit": DEAD_LETTER_QUEUE_DELIVERY_LIMIT,
        }

    def test_faststream_queues_match_the_topology(self) -> None:
        topo = topology(ACTIVITY_CONSUMER, SETTINGS)
        queue = consumer_queue(topo)
        assert queue.name == "pre.analytics.activity"
        assert queue.durable is True
        assert queue.routing() == "#"
        assert queue.arguments == topo.queue_arguments
        dlq = dead_letter_queue(topo)
        assert dlq.name == "pre.analytics.activity.dlq"
        assert dlq.arguments == topo.dead_letter_arguments


class Note(Event, frozen=True, kw_only=True):
    """A test event at version 2: `text` was called `body` in version 1."""

    type: ClassVar[str] = "test.noted"
    version: ClassVar[int] = 2
    text: str


class TestRunnerDecoding:
    def _runner(self, spec: ConsumerSpec = ACTIVITY_CONSUMER) -> ConsumerRunner:
        registry = EventRegistry([Note])
        registry.upcaster("test.noted", 1)(lambda old: {"text": old["body"]})
        engine = create_engine("postgresql://localhost/unused")  # never connects in these tests
        return ConsumerRunner(spec, engine=engine, registry=registry)

    def test_decodes_the_body_and_upcasts_the_payload(self) -> None:
        env = an_envelope(type_="test.noted", payload={"body": "hello"})
        recorded = self._runner().decode(msgspec.json.encode(env))
        assert recorded.envelope == env
        assert recorded.event == Note(text="hello")

    async def test_side_effect_consumer_refuses_to_run_without_its_mark(self) -> None:
        spec = ConsumerSpec(name="x.hooks", binding_keys=("#",), handler=_noop, side_effects=True)
        body = msgspec.json.encode(an_envelope(type_="test.noted", payload={"body": "x"}))
        with pytest.raises(RuntimeError, match="prepare"):
            await self._runner(spec).process(body)

    async def test_undecodable_body_raises_for_redelivery(self) -> None:
        with pytest.raises(msgspec.DecodeError):
            await self._runner().process(b"not json")
        with pytest.raises(LookupError):
            await self._runner().process(msgspec.json.encode(an_envelope(type_="x.unknown")))

    def test_event_id_round_trips(self) -> None:
        env = an_envelope(type_="test.noted", payload={"body": "x"})
        decoded = self._runner().decode(msgspec.json.encode(env))
        assert isinstance(decoded.envelope.event_id, uuid.UUID)
        assert decoded.envelope.event_id == env.event_id
