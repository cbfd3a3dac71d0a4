"""Broker consumers: the spec, the queue topology, tracking records and the replay gate.

A consumer is a named handler fed by the `metachat.events` exchange through its own durable
quorum queue. Each message is handled in one database transaction that first records
`(consumer, event_id)` in `eventstore.tracking` (eventsourcing's tracking record) and then runs
the handler on the same connection, so the effect and the proof of it commit together or not at
all: a redelivered event finds its tracking row and is acknowledged without effect (R7).

Side-effecting consumers (webhooks, channel senders) also pass a replay gate: on their first
start they record a mark in `eventstore.consumer_marks`, and events at or below it are history,
acknowledged without effect (R13). This module knows nothing of FastStream; the worker wires it.

A consumer may say which events concern it (`accepts`): the others are acknowledged without
any database work and without a tracking row, since they have no effect to prove. A handler
consumer may also apply many events at once (`batch_handler`): the messages in hand are gathered
into one transaction that writes all their tracking rows in one statement and then applies the
new ones together (`batches`, decision 0013).

Messages of one queue are handled concurrently, up to the prefetch, so a consumer built on this
base promises no per-stream order; a consumer that needs order gets it from partitioned
single-active-consumer queues (R4), not from here.
"""

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from metachat.database.engine import CallPool
from metachat.eventstore.batches import Batcher
from metachat.eventstore.driver import autocommit
from metachat.eventstore.envelope import Envelope, Recorded
from metachat.eventstore.registry import EventRegistry
from metachat.eventstore.tracking import ReactionTracking
from metachat.kernel.logging import bound
from metachat.settings import Settings

if TYPE_CHECKING:
    import uuid

log = structlog.get_logger()

Handler = Callable[[AsyncConnection, Recorded], Awaitable[None]]
"""A consumer's effect: runs inside the transaction that also writes the tracking row."""
Reaction = Callable[[Recorded], Awaitable[None]]
"""A long-running consumer's effect (an LLM call, an HTTP delivery): runs outside any
transaction and must be idempotent by its own key; the tracking row is written after it."""
BatchHandler = Callable[[AsyncConnection, Sequence[Recorded]], Awaitable[None]]
"""Many events' effects at once, in the transaction that writes their tracking rows; it must
have the same effect as the handler applied to each event in turn (in any order)."""
Accepts = Callable[[Recorded], bool]
"""Whether an event concerns the consumer; one that does not is acknowledged untouched."""

DEAD_LETTER_EXCHANGE = "metachat.dlx"

# A peek at a dead-letter queue (`metachat dlq list`) takes messages without acking them and
# hands them back, which the broker counts as a failed delivery. RabbitMQ 4 gives quorum queues a
# default limit of 20 (and 3.10 refuses the 4.x spelling of "unlimited", -1), so the DLQ gets an
# explicit limit far beyond any number of peeks, instead of a default that would drop messages.
DEAD_LETTER_QUEUE_DELIVERY_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSpec:
    """A named consumer: what it binds to, what it does, and whether its effects leave the database.

    Attributes:
        name: stable name (`analytics.activity`); it names the queue and the tracking rows.
        binding_keys: topic patterns over `<tenant id>.<event type>`, e.g. `("#",)`.
        handler: the effect, `async (conn, recorded) -> None`, run in the tracking transaction.
        reaction: instead of a handler, a long effect `async (recorded) -> None` run outside
            any transaction (a transaction held open for seconds would hold back every
            gap-free reader, R2); it must be idempotent by its own key.
        side_effects: True for consumers that call the outside world; they get the replay gate.
        prefetch: messages in hand at once for this consumer (None: the process's setting);
            a consumer whose messages mostly wait (a model call) wants more than one that
            mostly computes.
        accepts: which events concern it (None: every event bound); the others are
            acknowledged without a tracking check or row, as they have no effect. A binding
            key cannot select on the payload (the assistant answers customers, not itself).
        batch_handler: with `handler`, the same effect for many events at once: the messages
            in hand are then applied in one transaction (a failed batch is applied again one
            message at a time with `handler`).
        batch_size: most messages in one batch (at most the prefetch gathers).
        batch_linger: seconds a batch waits for more messages before it is applied.
    """

    name: str
    binding_keys: tuple[str, ...]
    handler: Handler | None = None
    reaction: Reaction | None = None
    side_effects: bool = False
    prefetch: int | None = None
    accepts: Accepts | None = None
    batch_handler: BatchHandler | None = None
    batch_size: int = 256
    batch_linger: float = 0.0

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"consumer name {self.name!r} must be non-empty without spaces")
        if not self.binding_keys:
            raise ValueError(f"consumer {self.name} needs at least one binding key")
        if (self.handler is None) == (self.reaction is None):
            raise ValueError(f"consumer {self.name} needs a handler or a reaction, not both")
        if self.batch_handler is not None and self.handler is None:
            raise ValueError(f"consumer {self.name}: a batch handler needs its one-event handler")
        if self.batch_size < 1 or self.batch_linger < 0:
            raise ValueError(f"consumer {self.name}: batch_size >= 1 and batch_linger >= 0")


def queue_name(settings: Settings, consumer: str) -> str:
    """The consumer's own queue: `<prefix><consumer>`."""
    return f"{settings.amqp.queue_prefix}{consumer}"


def dead_letter_queue_name(settings: Settings, consumer: str) -> str:
    """The consumer's dead-letter queue: `<prefix><consumer>.dlq`."""
    return f"{queue_name(settings, consumer)}.dlq"


def dead_letter_exchange_name(settings: Settings) -> str:
    """The direct exchange every consumer queue dead-letters to: `<prefix>metachat.dlx`."""
    return f"{settings.amqp.queue_prefix}{DEAD_LETTER_EXCHANGE}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """The broker objects of one consumer, with their exact declaration arguments."""

    exchange: str
    queue: str
    binding_keys: tuple[str, ...]
    dead_letter_exchange: str
    dead_letter_queue: str
    max_deliveries: int

    @property
    def queue_arguments(self) -> dict[str, Any]:
        """Quorum queue, bounded redelivery, then dead-lettering that cannot lose the message."""
        return {
            "x-queue-type": "quorum",
            # RabbitMQ's `x-delivery-limit` counts *returns*: with limit L a message is delivered
            # L + 1 times (measured on 3.10: limit 3 gave 4 deliveries). Our setting counts
            # deliveries, so the explicit argument is one less (R8: never the broker default).
            "x-delivery-limit": self.max_deliveries - 1,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": self.queue,
            # At-least-once dead-lettering keeps the message in this queue until the DLQ has
            # confirmed it (R6); RabbitMQ requires `reject-publish` overflow for that strategy.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    @property
    def dead_letter_arguments(self) -> dict[str, Any]:
        """Quorum DLQ whose explicit delivery limit no number of peeks can reach."""
        return {"x-queue-type": "quorum", "x-delivery-limit": DEAD_LETTER_QUEUE_DELIVERY_LIMIT}


def topology(spec: ConsumerSpec, settings: Settings) -> Topology:
    """Return the names and arguments of a consumer's queue, DLX and DLQ."""
    return Topology(
        exchange=settings.amqp.exchange,
        queue=queue_name(settings, spec.name),
        binding_keys=spec.binding_keys,
        dead_letter_exchange=dead_letter_exchange_name(settings),
        dead_letter_queue=dead_letter_queue_name(settings, spec.name),
        max_deliveries=settings.consumer.delivery_limit,
    )


class Outcome(enum.StrEnum):
    """What handling one message did."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    HISTORY = "history"
    IGNORED = "ignored"


# Under READ COMMITTED a second delivery of the same event (another worker, or a redelivery that
# overtook a slow first one) blocks on the primary key until the first transaction ends, then
# sees the row and does nothing; if the first rolled back, the second inserts and applies.
_TRACK = text("""
INSERT INTO eventstore.tracking (consumer, event_id, position)
VALUES (:consumer, :event_id, :position)
ON CONFLICT (consumer, event_id) DO NOTHING
RETURNING position
""")
# A batch's rows in one statement, in event-id order: two batches sharing events lock their
# rows in the same order, so they wait for each other instead of deadlocking.
_TRACK_MANY = text("""
INSERT INTO eventstore.tracking (consumer, event_id, position)
SELECT :consumer, t.event_id, t.position
FROM unnest(CAST(:event_ids AS uuid[]), CAST(:positions AS bigint[])) AS t(event_id, position)
ORDER BY t.event_id
ON CONFLICT (consumer, event_id) DO NOTHING
RETURNING event_id
""")
_READ_MARK = text("SELECT start_position FROM eventstore.consumer_marks WHERE consumer = :consumer")
_INSERT_MARK = text("""
INSERT INTO eventstore.consumer_marks (consumer, start_position) VALUES (:consumer, :position)
ON CONFLICT (consumer) DO NOTHING
""")
_ALLOCATED = text("""
SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
FROM eventstore.events_position_seq
""")
_SNAPSHOT_XMAX = text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
_SNAPSHOT_XMIN = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")

_envelope_decoder = msgspec.json.Decoder(Envelope)


async def establish_mark(engine: AsyncEngine, consumer: str, *, poll: float = 0.05) -> int:
    """Return the consumer's replay-gate mark, recording it on the consumer's first start.

    The mark is the highest position handed out before the start. Taking the highest *committed*
    position instead would be wrong: a transaction still open could hold a lower position,
    commit after the mark, and have its live event suppressed. So the mark waits until every
    transaction that could hold a position at or below it has ended (the same transaction-id
    fence as the gap-free reader; an append takes its transaction id before its position). Once
    recorded, every position at or below the mark is committed or dead, and every event that
    commits later is above it.
    """
    async with engine.connect() as conn:
        existing = await conn.scalar(_READ_MARK, {"consumer": consumer})
        if existing is not None:
            return int(existing)
        allocated = int(await conn.scalar(_ALLOCATED) or 0)
        fence = int(await conn.scalar(_SNAPSHOT_XMAX) or 0)
        waiting_logged = False
        while int(await conn.scalar(_SNAPSHOT_XMIN) or 0) < fence:
            if not waiting_logged:
                log.info("consumer_mark_waiting_for_open_transactions", consumer=consumer)
                waiting_logged = True
            await conn.rollback()  # never hold a snapshot while waiting for others
            await asyncio.sleep(poll)
        await conn.execute(_INSERT_MARK, {"consumer": consumer, "position": allocated})
        # Two workers starting at once: the first insert wins and both read back its mark.
        mark = int(await conn.scalar(_READ_MARK, {"consumer": consumer}))
        await conn.commit()
    log.info("consumer_mark_recorded", consumer=consumer, start_position=mark)
    return mark


class ConsumerRunner:
    """Handles one consumer's messages: decode, replay gate, then tracking and effect in one txn."""

    def __init__(
        self,
        spec: ConsumerSpec,
        *,
        engine: AsyncEngine,
        registry: EventRegistry,
        calls: CallPool | None = None,
    ) -> None:
        self.spec = spec
        self.mark: int | None = None
        self._engine = engine
        self._registry = registry
        # A reaction's two tracking statements run on the call pool (the engine's connections
        # when None).
        self._tracking = ReactionTracking(spec.name, lambda: autocommit(engine, calls))
        self._batcher: Batcher[Recorded, Outcome] | None = None
        if spec.batch_handler is not None:
            self._batcher = Batcher(
                apply_batch=self._apply_batch,
                apply_one=self._apply_alone,
                size=spec.batch_size,
                linger=spec.batch_linger,
                name=spec.name,
            )

    async def prepare(self) -> None:
        """Load (or record, on first start) the replay-gate mark of a side-effecting consumer."""
        if self.spec.side_effects:
            self.mark = await establish_mark(self._engine, self.spec.name)

    def decode(self, body: bytes) -> Recorded:
        """Decode a body into the envelope and its payload, upcast to the current version."""
        envelope = _envelope_decoder.decode(body)
        event = self._registry.decode(envelope.type, envelope.schema_version, envelope.payload)
        return Recorded(envelope=envelope, event=event)

    async def process(self, body: bytes, *, attempt: int | None = None) -> Outcome:
        """Handle one message body; raise when it must be redelivered (in the end, dead-lettered).

        Args:
            body: the envelope as JSON, as published by the relay.
            attempt: which delivery this is (1 for the first), for the logs only.
        """
        try:
            recorded = self.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, LookupError):
            log.warning(
                "consumer_message_undecodable",
                consumer=self.spec.name,
                attempt=attempt,
                exc_info=True,
            )
            raise
        env = recorded.envelope
        with bound(
            consumer=self.spec.name,
            event_id=str(env.event_id),
            correlation_id=str(env.correlation_id),
            tenant_id=str(env.tenant_id),
        ):
            if self.spec.accepts is not None and not self.spec.accepts(recorded):
                return Outcome.IGNORED
            if self._is_history(env):
                log.debug("consumer_history_skipped", position=env.position, mark=self.mark)
                return Outcome.HISTORY
            try:
                if self._batcher is not None:
                    return await self._batcher.submit(recorded)
                return await self._apply(recorded)
            except Exception:
                log.warning(
                    "consumer_handler_failed", event_type=env.type, attempt=attempt, exc_info=True
                )
                raise

    def _is_history(self, env: Envelope) -> bool:
        if not self.spec.side_effects:
            return False
        if self.mark is None:
            raise RuntimeError(f"consumer {self.spec.name} has side effects: call prepare() first")
        return env.position <= self.mark

    async def _apply(self, recorded: Recorded) -> Outcome:
        env = recorded.envelope
        params = {"consumer": self.spec.name, "event_id": env.event_id, "position": env.position}
        if self.spec.reaction is not None:
            return await self._react(self.spec.reaction, recorded, params)
        if self.spec.handler is None:
            raise AssertionError("a spec has a handler or a reaction")
        async with self._engine.begin() as conn:
            tracked = await conn.scalar(_TRACK, params)
            if tracked is None:
                log.info("consumer_duplicate_skipped", position=env.position)
                return Outcome.DUPLICATE
            await self.spec.handler(conn, recorded)
        return Outcome.APPLIED

    async def _apply_alone(self, recorded: Recorded) -> Outcome:
        """One message of a failed batch, on its own (logging as that message)."""
        env = recorded.envelope
        with bound(consumer=self.spec.name, event_id=str(env.event_id)):
            return await self._apply(recorded)

    async def _apply_batch(self, batch: Sequence[Recorded]) -> list[Outcome]:
        """Track and apply a batch in one transaction; each message's outcome, in order."""
        if self.spec.batch_handler is None:
            raise AssertionError("only a batched consumer has a batcher")
        unique: dict[uuid.UUID, Recorded] = {}
        for recorded in batch:  # the same event twice in hand (published twice): applied once
            unique.setdefault(recorded.envelope.event_id, recorded)
        ordered = sorted(unique.values(), key=lambda r: r.envelope.event_id)
        params = {
            "consumer": self.spec.name,
            "event_ids": [r.envelope.event_id for r in ordered],
            "positions": [r.envelope.position for r in ordered],
        }
        async with self._engine.begin() as conn:
            fresh = set((await conn.execute(_TRACK_MANY, params)).scalars())
            applied = [r for r in ordered if r.envelope.event_id in fresh]
            if applied:
                await self.spec.batch_handler(conn, applied)
        outcomes: list[Outcome] = []
        for recorded in batch:
            env = recorded.envelope
            if env.event_id in fresh:
                fresh.discard(env.event_id)
                outcomes.append(Outcome.APPLIED)
            else:
                log.info(
                    "consumer_duplicate_skipped",
                    consumer=self.spec.name,
                    event_id=str(env.event_id),
                    position=env.position,
                )
                outcomes.append(Outcome.DUPLICATE)
        return outcomes

    async def _react(
        self, reaction: Reaction, recorded: Recorded, params: dict[str, Any]
    ) -> Outcome:
        # The tracking row comes after the effect: a crash in between redelivers the event and
        # the reaction runs again, which its own idempotency key turns into a no-op. Neither
        # statement shares a transaction with anything, so each runs in autocommit, gathered
        # with those of the other reactions in flight (`tracking`).
        if await self._tracking.seen(params["event_id"]):
            log.info("consumer_duplicate_skipped", position=params["position"])
            return Outcome.DUPLICATE
        await reaction(recorded)
        await self._tracking.track(params["event_id"], params["position"])
        return Outcome.APPLIED
