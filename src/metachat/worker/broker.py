"""FastStream assembly for the broker consumers: the broker, the topology objects, the subscribers.

FastStream expresses almost all of it: quorum queues with explicit arguments (`RabbitQueue` with
`QueueType.QUORUM`), the topic exchange, and the ack policy. Two things are done through the
aio-pika objects FastStream's own declarer returns, because a FastStream subscriber binds its
queue with exactly one routing key: extra binding keys, and the dead-letter queue's binding.
"""

import logging
from typing import TYPE_CHECKING, cast

import structlog
from faststream import AckPolicy
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)
from faststream.rabbit.annotations import RabbitMessage

from metachat.eventstore.consumer import ConsumerRunner, Topology
from metachat.settings import Settings

if TYPE_CHECKING:
    from faststream.rabbit.schemas.queue import QuorumQueueArgs

log = structlog.get_logger()

# How long `stop` waits for handlers in flight. A handler cut short rolls its transaction back
# and its message is redelivered, so this bounds shutdown time, not correctness.
GRACEFUL_TIMEOUT = 15.0


ACCESS_LOGGER = "faststream.metachat"
"""FastStream's own logger for the broker: a standard logger under `faststream`, which
`configure_logging` keeps at WARNING, so its per-delivery "Received"/"Processed" lines (INFO)
are dropped before they are formatted. FastStream's default access logger ignores that level
(it sets its own, with a plain-text handler on stdout); our JSON lines say what happened."""


def build_broker(settings: Settings) -> RabbitBroker:
    """A FastStream broker for the consumers, with the configured prefetch per channel.

    Without FastStream's dependency injection (`apply_types=False`): a handler gets the message
    itself (`_as_message` below), where the injected `RabbitMessage` cost a thread-pool round
    trip per delivery (FastDepends solves a context field with a synchronous function in a
    worker thread) and the body was parsed as JSON by FastStream before `ConsumerRunner`
    decoded it again with msgspec.
    """
    return RabbitBroker(
        settings.amqp.url,
        default_channel=Channel(prefetch_count=settings.consumer.prefetch),
        graceful_timeout=GRACEFUL_TIMEOUT,
        logger=logging.getLogger(ACCESS_LOGGER),
        apply_types=False,
    )


async def _as_message(message: RabbitMessage) -> RabbitMessage:
    """The subscriber's decoder: the message as it came, for `ConsumerRunner` to decode."""
    return message


def events_exchange(topology: Topology) -> RabbitExchange:
    """The durable topic exchange the relay publishes to."""
    return RabbitExchange(topology.exchange, type=ExchangeType.TOPIC, durable=True)


def dead_letter_exchange(topology: Topology) -> RabbitExchange:
    """The durable direct exchange that routes a dead message to its consumer's DLQ."""
    return RabbitExchange(topology.dead_letter_exchange, type=ExchangeType.DIRECT, durable=True)


def consumer_queue(topology: Topology) -> RabbitQueue:
    """The consumer's quorum queue, bound (by FastStream) with the first binding key."""
    return RabbitQueue(
        topology.queue,
        QueueType.QUORUM,
        durable=True,
        arguments=cast("QuorumQueueArgs", topology.queue_arguments),
        routing_key=topology.binding_keys[0],
    )


def dead_letter_queue(topology: Topology) -> RabbitQueue:
    """The consumer's quorum dead-letter queue."""
    return RabbitQueue(
        topology.dead_letter_queue,
        QueueType.QUORUM,
        durable=True,
        arguments=cast("QuorumQueueArgs", topology.dead_letter_arguments),
    )


async def declare_topology(broker: RabbitBroker, topology: Topology) -> None:
    """Declare the DLX, the DLQ, the exchange and the queue with every binding key.

    The DLQ exists and is bound before the queue that dead-letters into it, so a message can
    never be dead-lettered to an exchange with nowhere to route it.
    """
    dlx = await broker.declare_exchange(dead_letter_exchange(topology))
    dlq = await broker.declare_queue(dead_letter_queue(topology))
    await dlq.bind(dlx, routing_key=topology.queue)
    exchange = await broker.declare_exchange(events_exchange(topology))
    queue = await broker.declare_queue(consumer_queue(topology))
    for key in topology.binding_keys:
        await queue.bind(exchange, routing_key=key)


def subscribe(broker: RabbitBroker, runner: ConsumerRunner, topology: Topology) -> None:
    """Register the runner as a FastStream subscriber of its queue.

    `NACK_ON_ERROR` answers a failed handler with `basic.nack(requeue=True)`: the message goes
    back to the quorum queue, whose delivery count grows until the delivery limit dead-letters
    it (R8). `REJECT_ON_ERROR` would not do: FastStream rejects without requeue, which
    dead-letters on the first failure. Success acks after the transaction committed.
    """

    async def handle(message: RabbitMessage) -> None:
        returns = message.headers.get("x-delivery-count", 0)
        attempt = int(returns) + 1 if isinstance(returns, int) else None
        await runner.process(message.body, attempt=attempt)

    handle.__name__ = f"consume_{runner.spec.name.replace('.', '_')}"
    subscriber = broker.subscriber(
        consumer_queue(topology),
        events_exchange(topology),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        no_reply=True,
        decoder=_as_message,
        title=runner.spec.name,
        channel=None
        if runner.spec.prefetch is None
        else Channel(prefetch_count=runner.spec.prefetch),
    )
    subscriber(handle)
