"""Helpers for the relay tests: tenants, a recording sink queue, outbox reads, polling waits."""

import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Self

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.eventstore.envelope import Metadata
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7


async def a_tenant(engine: AsyncEngine) -> Metadata:
    tenant_id = uuid7()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"), {"t": tenant_id}
        )
    return Metadata(tenant_id=tenant_id, actor=Actor.system(), correlation_id=uuid7())


async def outbox_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT position, attempts, last_error, next_attempt_at FROM eventstore.outbox ORDER BY position"
            )
        )
        return list(result.all())


@dataclass(frozen=True)
class Received:
    message_id: str
    routing_key: str
    headers: dict[str, Any]
    body: bytes
    content_type: str | None
    delivery_mode: int | None
    at: float


@dataclass
class Sink:
    """An exclusive queue bound to the events exchange that records every message it receives."""

    amqp_url: str
    exchange: str
    binding: str = "#"
    messages: list[Received] = field(default_factory=list)
    _connection: Any = None

    async def __aenter__(self) -> Self:
        self._connection = await aio_pika.connect(self.amqp_url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=2000)
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, self.binding)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(
            Received(
                message_id=str(message.message_id),
                routing_key=str(message.routing_key),
                headers=dict(message.headers),
                body=message.body,
                content_type=message.content_type,
                delivery_mode=int(message.delivery_mode)
                if message.delivery_mode is not None
                else None,
                at=time.time(),
            )
        )

    def ids(self) -> set[str]:
        return {m.message_id for m in self.messages}


def close_broker_connections(name: str) -> int:
    """Force-close the broker connections whose client name is `name` (fault injection, R5)."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pids = [line.split("\t")[0] for line in listing.splitlines() if f'"{name}"' in line]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, "R5 fault injection"],
            capture_output=True,
            check=True,
        )
    return len(pids)
