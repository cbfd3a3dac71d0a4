"""The relay's broker side: the public message contract and confirmed, pipelined publishing."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import aio_pika
import msgspec
from aio_pika.abc import AbstractExchange
from aio_pika.exceptions import DeliveryError, PublishError

from metachat.eventstore.envelope import Envelope

PUBLISH_TIMEOUT = 30.0
"""Seconds to wait for a confirm; past it the outcome is unknown, so the relay reconnects."""

_encoder = msgspec.json.Encoder()


def to_message(envelope: Envelope) -> aio_pika.Message:
    """Build the AMQP message of an envelope, as the public contract describes it.

    Message id = event id; body = the envelope as JSON; persistent; headers carry tenant, type,
    stream, version, position and correlation id so consumers can route and order without
    decoding the body.
    """
    return aio_pika.Message(
        body=_encoder.encode(envelope),
        message_id=str(envelope.event_id),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=envelope.occurred_at,
        correlation_id=str(envelope.correlation_id),
        type=envelope.type,
        headers={
            "x-tenant-id": str(envelope.tenant_id),
            "x-event-type": envelope.type,
            "x-stream-id": envelope.stream_id,
            "x-stream-version": envelope.stream_version,
            "x-position": envelope.position,
            "x-correlation-id": str(envelope.correlation_id),
        },
    )


@dataclass
class Outcome:
    """What the broker said about one batch.

    Attributes:
        confirmed: positions the broker acknowledged (safe to delete).
        failed: envelopes the broker returned (no queue bound) or nacked, with the reason.
        broken: the first connection-level failure, when the outcome of some messages is unknown.
    """

    confirmed: list[int] = field(default_factory=list)
    failed: list[tuple[Envelope, str]] = field(default_factory=list)
    broken: BaseException | None = None


async def publish_batch(exchange: AbstractExchange, envelopes: Sequence[Envelope]) -> Outcome:
    """Publish every envelope at once and wait for all confirms (pipelined, in position order).

    The exchange's channel must have publisher confirms and `on_return_raises`. The publishes
    enter the channel in list order (its lock is first come, first served), so the broker
    routes them in position order; awaiting them together costs one round trip per batch
    instead of one per message.
    """
    results = await asyncio.gather(
        *(
            exchange.publish(
                to_message(env), env.routing_key, mandatory=True, timeout=PUBLISH_TIMEOUT
            )
            for env in envelopes
        ),
        return_exceptions=True,
    )
    outcome = Outcome()
    for env, result in zip(envelopes, results, strict=True):
        if isinstance(result, PublishError):
            outcome.failed.append((env, f"unroutable: {result.reason}"))
        elif isinstance(result, DeliveryError):
            outcome.failed.append((env, f"nacked: {result.reason}"))
        elif isinstance(result, BaseException):
            # Unknown outcome (connection lost, timeout): leave the row as it is, publish again.
            outcome.broken = outcome.broken or result
        else:
            outcome.confirmed.append(env.position)
    return outcome
