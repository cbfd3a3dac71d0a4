"""The relay's broker side: the message contract, pipelined confirmed publishing, the window.

The window holds the batches that were published and still await their confirms.
"""

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import msgspec
import structlog
from aio_pika.abc import AbstractExchange
from aio_pika.exceptions import DeliveryError, PublishError

from metachat.eventstore.envelope import Envelope

log = structlog.get_logger()

IN_FLIGHT_BATCHES = 2
"""Batches published and awaiting confirms at once; two overlap a claim with a confirm wait."""

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
            # aiormq keeps the broker's reply text ("NO_ROUTE") in args; `reason` is a template.
            reply = result.args[0] if result.args else "NO_ROUTE"
            outcome.failed.append((env, f"unroutable: {reply}"))
        elif isinstance(result, DeliveryError):
            outcome.failed.append((env, f"nacked: {result.reason}"))
        elif isinstance(result, BaseException):
            # Unknown outcome (connection lost, timeout): leave the row as it is, publish again.
            outcome.broken = outcome.broken or result
        else:
            outcome.confirmed.append(env.position)
    return outcome


class Window:
    """The relay's batches published but not settled yet; their rows are left out of claims."""

    def __init__(self) -> None:
        self.tasks: dict[asyncio.Task[None], list[int]] = {}
        self.changed = asyncio.Event()
        self.backlog = False

    @property
    def positions(self) -> list[int]:
        """Positions of every row published and not yet settled."""
        return [position for positions in self.tasks.values() for position in positions]

    def full(self) -> bool:
        """No claim now: the window is at its limit, or traffic is light (no backlog).

        Under light traffic, events that commit during a confirm wait join the next batch
        rather than going out as many tiny batches; that keeps the cost per event, and with
        it the latency, low when the machine is busy. A backlog (the last batch was full)
        pipelines batches to drain faster.
        """
        return len(self.tasks) >= IN_FLIGHT_BATCHES or (bool(self.tasks) and not self.backlog)

    def launch(self, work: Coroutine[Any, Any, None], positions: list[int]) -> None:
        """Run `work` (publish, then settle, the rows at `positions`) as a task of the window."""
        task = asyncio.create_task(work, name="relay-batch")
        task.add_done_callback(lambda _: self.changed.set())
        self.tasks[task] = positions

    def reap(self) -> None:
        """Forget settled batches; re-raise the failure of a batch that broke."""
        for task in [task for task in self.tasks if task.done()]:
            del self.tasks[task]
            task.result()

    async def close(self, *, cancel: bool) -> None:
        """Wait for the batches still out (cancelled first when the term is ending in error)."""
        for task in self.tasks:
            if cancel:
                task.cancel()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("relay_batch_abandoned", error=repr(result))
        self.tasks.clear()
