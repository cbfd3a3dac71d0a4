"""The outbox relay: publishes committed events to RabbitMQ, deleting a row only once confirmed.

One relay is active at a time (a session advisory lock, see `leader`). Each round it takes the
oldest outbox rows in position order, publishes them pipelined on a confirming channel
(`mandatory`, persistent, `on_return_raises`), and deletes exactly the rows the broker acked. A
row the broker returned (no queue bound) or nacked stays, with its attempt counted, its error
kept and an exponential back-off; nothing is ever dropped. Killing the relay at any instant
loses nothing: an unconfirmed row is still in the outbox and is published again (at least once;
consumers deduplicate by event id).

The relay wakes on `NOTIFY metachat_events` and also polls, so a lost hint only delays.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import msgspec
import psycopg
import structlog
from aio_pika.abc import AbstractExchange
from aio_pika.exceptions import DeliveryError, PublishError
from psycopg.rows import namedtuple_row

from metachat.database.engine import libpq_url
from metachat.eventstore import outbox as sql
from metachat.eventstore.envelope import Envelope
from metachat.eventstore.leader import holder_name, wait_for_lease
from metachat.eventstore.notify import CHANNEL
from metachat.eventstore.outbox import OutboxStats, outbox_stats
from metachat.eventstore.postgres import envelope_from_row
from metachat.kernel.logging import bound
from metachat.settings import Settings

log = structlog.get_logger()

__all__ = ["OutboxStats", "Relay", "RelayStats", "outbox_stats", "to_message"]

LEASE_NAME = "relay"
PUBLISH_TIMEOUT = 30.0
"""Seconds to wait for a confirm; past it the outcome is unknown, so the relay reconnects."""

# Failures that end a leadership term: the relay closes everything, backs off and starts over.
_CONNECTION_FAILURES: tuple[type[BaseException], ...] = (
    psycopg.Error,
    aio_pika.exceptions.AMQPError,
    ConnectionError,
    OSError,
    TimeoutError,
)

_encoder = msgspec.json.Encoder()


@dataclass
class RelayStats:
    """Counters of one relay process (published, returned, nacked), for logs and metrics."""

    published: int = 0
    unroutable: int = 0
    nacked: int = 0
    rounds: int = 0
    leading: bool = False


@dataclass
class _Outcome:
    confirmed: list[int] = field(default_factory=list)
    failed: list[tuple[Envelope, str]] = field(default_factory=list)
    broken: BaseException | None = None


def to_message(envelope: Envelope) -> aio_pika.Message:
    """Build the AMQP message of an envelope, as the public contract describes it."""
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


class Relay:
    """Publishes the outbox to the events exchange while it holds the relay lease."""

    def __init__(
        self,
        settings: Settings,
        *,
        database_url: str,
        retry_base: float = 1.0,
        retry_cap: float = 300.0,
    ) -> None:
        self._settings = settings
        self._db_url = libpq_url(database_url)
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self.holder = holder_name()
        self.stats = RelayStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Lead or stand by until `stop` is set; reconnect with back-off after any failure."""
        delay = 0.5
        while not stop.is_set():
            try:
                led = await self._term(stop)
            except _CONNECTION_FAILURES as exc:
                # Back off exponentially (capped) so a down broker or database is not hammered;
                # everything was closed, so the lock is free for a healthier standby meanwhile.
                log.warning("relay_reconnecting", error=repr(exc), retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 10.0)
                continue
            finally:
                self.stats.leading = False
            if led:
                delay = 0.5

    async def _term(self, stop: asyncio.Event) -> bool:
        """Wait for the lease, then publish until stop or failure; True if this relay led."""
        async with await psycopg.AsyncConnection.connect(
            self._db_url, autocommit=True, row_factory=namedtuple_row
        ) as conn:
            log.info("relay_standby", holder=self.holder)
            lease_retry = self._settings.relay.lease_retry
            if not await wait_for_lease(conn, LEASE_NAME, retry=lease_retry, stop=stop):
                return False
            log.info("relay_leading", holder=self.holder)
            # Losing a committed DELETE in a database crash only republishes those events (at
            # least once; consumers deduplicate by event id), so the relay need not wait for the
            # WAL flush on each settle; the events themselves were committed durably by writers.
            await conn.execute("SET synchronous_commit = off")
            self.stats.leading = True
            # Every query of the term runs on the lock's own connection: if that session is lost,
            # the lock is gone and so is this relay's ability to read or delete outbox rows, so a
            # relay that lost leadership cannot go on publishing.
            async with self._broker() as exchange, self._wake_up() as wake:
                await self._lead(conn, exchange, wake, stop)
            return True

    @contextlib.asynccontextmanager
    async def _broker(self) -> AsyncIterator[AbstractExchange]:
        amqp = self._settings.amqp
        connection = await aio_pika.connect(amqp.url)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            yield await channel.declare_exchange(
                amqp.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
        finally:
            await connection.close()

    async def _lead(
        self,
        conn: psycopg.AsyncConnection[Any],
        exchange: AbstractExchange,
        wake: asyncio.Event,
        stop: asyncio.Event,
    ) -> None:
        relay = self._settings.relay
        while not stop.is_set():
            # Clear before reading: a NOTIFY that lands during the round wakes the next one.
            wake.clear()
            count = await self.publish_round(conn, exchange)
            if count < relay.batch_size:
                await _wait_any(wake, stop, within=relay.poll_interval)

    async def publish_round(
        self, conn: psycopg.AsyncConnection[Any], exchange: AbstractExchange
    ) -> int:
        """Publish one batch, settle its rows and beat; return how many rows the batch held.

        The heartbeat rides on the statement that deletes the confirmed rows, so an idle round
        still beats and a busy one costs a single round trip and commit.
        """
        cursor = await conn.execute(sql.CLAIM, {"limit": self._settings.relay.batch_size})
        rows = await cursor.fetchall()
        envelopes = [envelope_from_row(row) for row in rows]
        outcome = await _publish_all(exchange, envelopes) if envelopes else _Outcome()
        await conn.execute(sql.SETTLE, {"positions": outcome.confirmed, "holder": self.holder})
        if outcome.failed:
            await self._hold_back(conn, outcome.failed)
        self.stats.published += len(outcome.confirmed)
        self.stats.rounds += 1
        if outcome.broken is not None:
            raise outcome.broken
        return len(rows)

    async def _hold_back(
        self, conn: psycopg.AsyncConnection[Any], failed: Sequence[tuple[Envelope, str]]
    ) -> None:
        """Keep returned or nacked rows, count the attempt, and schedule a backed-off retry."""
        await conn.execute(
            sql.HOLD_BACK,
            {
                "positions": [env.position for env, _ in failed],
                "errors": [error for _, error in failed],
                "base": self._retry_base,
                "cap": self._retry_cap,
            },
        )
        for env, error in failed:
            if error.startswith("unroutable"):
                self.stats.unroutable += 1
            else:
                self.stats.nacked += 1
            with bound(correlation_id=str(env.correlation_id), tenant_id=str(env.tenant_id)):
                log.error(
                    "relay_unroutable",
                    event_id=str(env.event_id),
                    routing_key=env.routing_key,
                    position=env.position,
                    error=error,
                )

    @contextlib.asynccontextmanager
    async def _wake_up(self) -> AsyncIterator[asyncio.Event]:
        wake = asyncio.Event()
        task = asyncio.create_task(self._listen(wake), name="relay-listen")
        try:
            yield wake
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self, wake: asyncio.Event) -> None:
        """Turn NOTIFY hints into wake-ups; on failure reconnect, the poll covers the gap."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._db_url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for _ in conn.notifies():
                        wake.set()
            except (psycopg.Error, OSError) as exc:
                log.warning("relay_listen_reconnecting", error=repr(exc))
                await asyncio.sleep(self._settings.relay.poll_interval)


async def _publish_all(exchange: AbstractExchange, envelopes: Sequence[Envelope]) -> _Outcome:
    """Publish every envelope at once and wait for all confirms (pipelined, in position order).

    The publishes enter the channel in list order, so the broker routes them in position order;
    awaiting them together keeps one round trip per batch instead of one per message.
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
    outcome = _Outcome()
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


async def _wait_any(*events: asyncio.Event, within: float) -> None:
    """Return when any event is set or after `within` seconds."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
