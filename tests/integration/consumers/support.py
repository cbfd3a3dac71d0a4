"""Helpers for the consumer tests: a harness per test (own database, exchange and queues)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.bootstrap import Deps
from metachat.eventstore.consumer import (
    ConsumerSpec,
    dead_letter_exchange_name,
    dead_letter_queue_name,
    queue_name,
)
from metachat.eventstore.envelope import Envelope, Recorded
from metachat.eventstore.relay import to_message
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.settings import Settings
from metachat.tenants.handlers import create_tenant, rename_tenant
from metachat.worker.consumers_role import queue_depth, run_consumers


async def make_history(deps: Deps, *, tenants: int = 3, renames: int = 4) -> list[Recorded]:
    """Create tenants (created + key issued) and rename each a few times; return the events."""
    before = await deps.store.last_position()
    for t in range(tenants):
        issued = await create_tenant(
            f"Tenant {t}", deps=deps.tenants, actor=Actor.operator(), correlation_id=uuid7()
        )
        for r in range(renames):
            await rename_tenant(
                issued.tenant_id,
                f"Tenant {t}.{r}",
                deps=deps.tenants,
                actor=Actor.operator(),
                correlation_id=uuid7(),
            )
    return await all_events(deps, after=before)


async def all_events(deps: Deps, *, after: int = 0) -> list[Recorded]:
    events: list[Recorded] = []
    while page := await deps.store.read_all(after=after, limit=1000):
        events += page
        after = page[-1].envelope.position
    return events


async def tracked(engine: AsyncEngine, consumer: str) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM eventstore.tracking WHERE consumer = :c"), {"c": consumer}
        )
    return int(count or 0)


async def daily_activity(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT tenant_id, day, event_type, count FROM analytics.daily_activity"
                " ORDER BY tenant_id, day, event_type"
            )
        )
        return [tuple(row) for row in rows]


@dataclass
class Harness:
    """One test's consumers: its own settings (exchange, queue prefix), deps and broker objects."""

    deps: Deps
    consumers: set[str] = field(default_factory=set)

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    @contextlib.asynccontextmanager
    async def running(self, specs: Sequence[ConsumerSpec]) -> AsyncIterator[None]:
        """Run `run_consumers` with these specs for the duration of the block."""
        self.consumers |= {spec.name for spec in specs}
        stop, started = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_consumers(self.deps, stop, specs=specs, started=started))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiter.cancel()
            await task  # raises what went wrong at start
        try:
            yield
        finally:
            stop.set()
            await task

    async def publish(self, envelopes: Iterable[Envelope]) -> None:
        """Publish as the relay does (persistent, mandatory, confirmed), in the given order."""
        async with await aio_pika.connect(self.settings.amqp.url) as connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.declare_exchange(
                self.settings.amqp.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            for envelope in envelopes:
                await exchange.publish(
                    to_message(envelope), routing_key=envelope.routing_key, mandatory=True
                )

    async def depth(self, queue: str) -> int | None:
        async with await aio_pika.connect(self.settings.amqp.url) as connection:
            return await queue_depth(connection, queue)

    def queue(self, consumer: str) -> str:
        return queue_name(self.settings, consumer)

    def dlq(self, consumer: str) -> str:
        return dead_letter_queue_name(self.settings, consumer)

    async def delete_broker_objects(self) -> None:
        async with await aio_pika.connect(self.settings.amqp.url) as connection:
            channel = await connection.channel()
            for consumer in self.consumers:
                for name in (self.queue(consumer), self.dlq(consumer)):
                    await channel.queue_delete(name)
            await channel.exchange_delete(dead_letter_exchange_name(self.settings))
            await channel.exchange_delete(self.settings.amqp.exchange)
