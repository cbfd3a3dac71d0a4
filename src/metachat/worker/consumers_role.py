"""The consumers role: every registered broker consumer, run on one FastStream broker."""

import asyncio
import contextlib
import gc
from collections.abc import Sequence

import aio_pika
import msgspec
import psycopg
import structlog
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity
from faststream.rabbit import RabbitBroker
from psycopg_pool import PoolTimeout
from sqlalchemy import text

from metachat.analytics import ACTIVITY_CONSUMER
from metachat.bootstrap import Deps, Orchestrator, build_orchestrator
from metachat.eventstore.consumer import ConsumerRunner, ConsumerSpec, Topology, topology
from metachat.orchestrator import REPLY_CONSUMER, reply_consumer
from metachat.settings import Settings
from metachat.worker.broker import build_broker, declare_topology, subscribe

log = structlog.get_logger()

CONSUMERS: tuple[ConsumerSpec, ...] = (ACTIVITY_CONSUMER, REPLY_CONSUMER)
"""Every broker consumer of the platform; `metachat run --role consumers` runs them all."""

_CONNECTION_FAILURES: tuple[type[BaseException], ...] = (AMQPError, ConnectionError, OSError)


async def run_consumers(
    deps: Deps,
    stop: asyncio.Event,
    *,
    specs: Sequence[ConsumerSpec] = CONSUMERS,
    started: asyncio.Event | None = None,
) -> None:
    """Run the consumers until `stop` is set, then close the broker cleanly.

    Order matters: the topology is declared first, then side-effecting consumers record their
    replay-gate marks, then consuming starts. With the queue bound before the mark is taken,
    every event above the mark reaches the queue, and none below it is acted on.
    """
    orchestrator = build_orchestrator(deps) if REPLY_CONSUMER in specs else None
    specs = [_bound(spec, orchestrator) for spec in specs]
    broker = build_broker(deps.settings)
    runners = [
        ConsumerRunner(spec, engine=deps.engine, registry=deps.registry, calls=deps.store.calls)
        for spec in specs
    ]
    topologies = [topology(spec, deps.settings) for spec in specs]
    for runner, topo in zip(runners, topologies, strict=True):
        subscribe(broker, runner, topo)
    try:
        await _warm(deps, orchestrator)
        if await _start(broker, topologies, runners, stop):
            # What exists once consuming (the broker's machinery, the orchestrator) lives as
            # long as the process, as `metachat run` does with what `build` made.
            gc.collect()
            gc.freeze()
            log.info("consumers_started", consumers=[spec.name for spec in specs])
            if started is not None:
                started.set()
            await stop.wait()
    finally:
        # Waits (up to the graceful timeout) for handlers in flight, then closes the connection;
        # unacked messages go back to their queues.
        await broker.stop()
        if orchestrator is not None:
            await orchestrator.close()
        log.info("consumers_stopped")


async def _warm(deps: Deps, orchestrator: Orchestrator | None) -> None:
    """Open the connections replies use before the first message, not while answering it.

    The call pool (every reaction's tracking and reads) and the reply locks' connections were
    opened on demand, a backend start each, while the first second's messages waited for them
    (measured at 100 messages/s: that second's median reply 2-5 times the others').
    """
    if orchestrator is not None:
        try:
            await orchestrator.locks.connect()
        except (psycopg.OperationalError, OSError) as exc:  # then on first use, as before
            log.warning("consumers_locks_not_connected", error=repr(exc))
    calls = deps.store.calls
    if calls is None or calls.max_size <= calls.min_size:
        return
    await calls.resize(min_size=calls.max_size)
    try:
        await calls.wait(timeout=10.0)
    except PoolTimeout as exc:  # a slow database: the pool keeps filling in the background
        log.warning("consumers_pool_not_filled", error=repr(exc))


def _bound(spec: ConsumerSpec, orchestrator: Orchestrator | None) -> ConsumerSpec:
    """The spec as it runs: the reply consumer gets the process's orchestrator."""
    if spec is REPLY_CONSUMER and orchestrator is not None:
        return reply_consumer(orchestrator.deps)
    return spec


async def _start(
    broker: RabbitBroker,
    topologies: Sequence[Topology],
    runners: Sequence[ConsumerRunner],
    stop: asyncio.Event,
) -> bool:
    """Declare, mark and start consuming; retry while the broker is unreachable, until `stop`.

    Only the first connection needs this loop: once started, aio-pika's robust connection
    reconnects and restores the consumers by itself.
    """
    delay = 0.5
    while not stop.is_set():
        try:
            await broker.connect()
            for topo in topologies:
                await declare_topology(broker, topo)
            for runner in runners:
                await runner.prepare()
            await broker.start()
        except _CONNECTION_FAILURES as exc:
            # Back off exponentially (capped) so an unreachable broker is not hammered, and let
            # the other roles of the process keep running meanwhile.
            log.warning("consumers_broker_unreachable", error=repr(exc), retry_in=delay)
            await broker.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 10.0)
        else:
            return True
    return False


async def declare_consumer_queues(
    settings: Settings, stop: asyncio.Event, *, specs: Sequence[ConsumerSpec] = CONSUMERS
) -> bool:
    """Declare every consumer's queues and bindings, retrying until the broker answers or `stop`.

    The relay calls this before it publishes: durable queues that exist before the first event
    keep every event for their consumer even while the consumers role is down, and an event is
    unroutable only when no consumer at all subscribes to its type.
    """
    delay = 0.5
    while not stop.is_set():
        broker = build_broker(settings)
        try:
            await broker.connect()
            for spec in specs:
                await declare_topology(broker, topology(spec, settings))
        except _CONNECTION_FAILURES as exc:
            log.warning("consumer_queues_not_declared", error=repr(exc), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 10.0)
        else:
            return True
        finally:
            await broker.stop()
    return False


class ConsumerLag(msgspec.Struct, frozen=True, kw_only=True):
    """How far one consumer is behind, for /metrics.

    Attributes:
        queue_depth: ready messages in its queue; None when the queue does not exist yet.
        dlq_depth: messages in its dead-letter queue; None when it does not exist yet.
        last_position: highest global position it has applied (0 when none).
    """

    queue_depth: int | None
    dlq_depth: int | None
    last_position: int


_LAST_POSITION = text(
    "SELECT coalesce(max(position), 0) FROM eventstore.tracking WHERE consumer = :consumer"
)


async def consumer_lag(
    deps: Deps,
    *,
    specs: Sequence[ConsumerSpec] = CONSUMERS,
    connection: AbstractConnection | None = None,
) -> dict[str, ConsumerLag]:
    """Return each consumer's queue depth, DLQ depth and last applied position.

    Without `connection`, a short-lived AMQP connection is opened for the passive declares.
    """
    if connection is None:
        async with await aio_pika.connect(deps.settings.amqp.url) as own:
            return await consumer_lag(deps, specs=specs, connection=own)
    lags: dict[str, ConsumerLag] = {}
    async with deps.engine.connect() as conn:
        for spec in specs:
            topo = topology(spec, deps.settings)
            position = await conn.scalar(_LAST_POSITION, {"consumer": spec.name})
            lags[spec.name] = ConsumerLag(
                queue_depth=await queue_depth(connection, topo.queue),
                dlq_depth=await queue_depth(connection, topo.dead_letter_queue),
                last_position=int(position or 0),
            )
    return lags


async def queue_depth(connection: AbstractConnection, name: str) -> int | None:
    """Ready messages in a queue (passive declare), or None when there is no such queue."""
    # A passive declare of a missing queue closes its channel, so each check gets its own.
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        return None
    finally:
        if not channel.is_closed:
            await channel.close()
    result = queue.declaration_result.message_count
    return int(result) if result is not None else None
