"""The outbox relay: publishes committed events to RabbitMQ, deleting a row only once confirmed.

One relay is active at a time (a session advisory lock, see `leader`). Each round it takes the
oldest outbox rows in position order, publishes them pipelined on a confirming channel
(`mandatory`, persistent, `on_return_raises`), and deletes exactly the rows the broker acked. A
row the broker returned (no queue bound) or nacked stays, with its attempt counted, its error
kept and an exponential back-off; nothing is ever dropped. Killing the relay at any instant
loses nothing: an unconfirmed row is still in the outbox and is published again (at least once;
consumers deduplicate by event id).

With a backlog, up to `publisher.IN_FLIGHT_BATCHES` batches are out at once: the next batch is
claimed and published while the broker is still confirming the previous one (a quorum queue
confirms only after its log is flushed), so the relay drains close to the broker's own pace.

The relay wakes on `NOTIFY metachat_events` and also polls, so a lost hint only delays.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import psycopg
import structlog
from aio_pika.abc import AbstractExchange
from psycopg.rows import namedtuple_row

from metachat.database.engine import libpq_url
from metachat.eventstore import outbox as sql
from metachat.eventstore.envelope import Envelope
from metachat.eventstore.leader import holder_name, wait_for_lease
from metachat.eventstore.notify import CHANNEL
from metachat.eventstore.outbox import OutboxStats, outbox_stats
from metachat.eventstore.postgres import envelope_from_row
from metachat.eventstore.publisher import Window, publish_batch, to_message
from metachat.kernel.logging import bound
from metachat.settings import Settings

log = structlog.get_logger()

__all__ = ["OutboxStats", "Relay", "RelayStats", "outbox_stats", "to_message"]

LEASE_NAME = "relay"
# Failures that end a leadership term: the relay closes everything, backs off and starts over.
# aiormq raises ChannelInvalidStateError (a RuntimeError) on a channel the broker closed.
_CONNECTION_FAILURES: tuple[type[BaseException], ...] = (
    psycopg.Error,
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)


@dataclass
class RelayStats:
    """Counters of one relay process (published, returned, nacked), for logs and metrics."""

    published: int = 0
    unroutable: int = 0
    nacked: int = 0
    rounds: int = 0
    reconnects: int = 0
    leading: bool = False


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
        self._led = False

    async def run(self, stop: asyncio.Event) -> None:
        """Lead or stand by until `stop` is set; reconnect with back-off after any failure."""
        delay = 0.5
        while not stop.is_set():
            self._led = False
            try:
                await self._term(stop)
            except _CONNECTION_FAILURES as exc:
                # Back off exponentially (capped) so a down broker or database is not hammered;
                # everything was closed, so the lock is free for a healthier standby meanwhile.
                # A term that got to lead was healthy: its failure starts the back-off afresh.
                delay = 0.5 if self._led else delay
                log.warning("relay_reconnecting", error=repr(exc), retry_in=delay)
                self.stats.reconnects += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 10.0)

    async def _term(self, stop: asyncio.Event) -> None:
        """Wait for the lease, then publish until `stop` is set or something fails."""
        async with await psycopg.AsyncConnection.connect(
            self._db_url, autocommit=True, row_factory=namedtuple_row
        ) as conn:
            log.info("relay_standby", holder=self.holder)
            lease_retry = self._settings.relay.lease_retry
            if not await wait_for_lease(conn, LEASE_NAME, retry=lease_retry, stop=stop):
                return
            log.info("relay_leading", holder=self.holder)
            # Losing a committed DELETE in a database crash only republishes those events (at
            # least once; consumers deduplicate by event id), so the relay need not wait for the
            # WAL flush on each settle; the events themselves were committed durably by writers.
            await conn.execute("SET synchronous_commit = off")
            self._led = self.stats.leading = True
            try:
                # Every query of the term runs on the lock's own connection: if that session is
                # lost, so are the lock and this relay's ability to read or delete outbox rows;
                # a relay that lost leadership cannot go on publishing.
                async with self._broker() as exchange, self._wake_up() as wake:
                    await self._lead(conn, exchange, wake, stop)
            finally:
                self.stats.leading = False

    @contextlib.asynccontextmanager
    async def _broker(self) -> AsyncIterator[AbstractExchange]:
        amqp = self._settings.amqp
        # Named, so an operator (or a fault-injection test) can find this relay's connection.
        name = f"metachat-relay {self.holder}"
        connection = await aio_pika.connect(amqp.url, client_properties={"connection_name": name})
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
        poll = self._settings.relay.poll_interval
        window = Window()
        try:
            while not stop.is_set():
                # Clear before reading: a NOTIFY that lands during the round wakes the next one.
                wake.clear()
                window.changed.clear()
                window.reap()
                if window.full() or not await self._launch(conn, exchange, window):
                    await _wait_any(wake, stop, window.changed, within=poll)
        except BaseException:
            await window.close(cancel=True)
            raise
        # A clean stop settles what the broker confirmed instead of publishing it again.
        await window.close(cancel=False)

    async def _launch(
        self, conn: psycopg.AsyncConnection[Any], exchange: AbstractExchange, window: Window
    ) -> bool:
        """Claim a batch and start publishing it; True when more rows are probably waiting."""
        limit = self._settings.relay.batch_size
        params = {"limit": limit, "in_flight": window.positions}
        rows = await (await conn.execute(sql.CLAIM, params)).fetchall()
        if not rows:
            if not window.tasks:  # idle: beat anyway (settling a batch beats otherwise)
                await conn.execute(sql.SETTLE, {"positions": [], "holder": self.holder})
            return False
        envelopes = [envelope_from_row(row) for row in rows]
        window.backlog = len(rows) == limit
        window.launch(self._publish(conn, exchange, envelopes), [e.position for e in envelopes])
        return len(rows) == limit

    async def _publish(
        self,
        conn: psycopg.AsyncConnection[Any],
        exchange: AbstractExchange,
        envelopes: Sequence[Envelope],
    ) -> None:
        """Publish one batch, then delete what was confirmed and beat, in one statement."""
        outcome = await publish_batch(exchange, envelopes)
        await conn.execute(sql.SETTLE, {"positions": outcome.confirmed, "holder": self.holder})
        if outcome.failed:
            await self._hold_back(conn, outcome.failed)
        self.stats.published += len(outcome.confirmed)
        self.stats.rounds += 1
        if outcome.broken is not None:
            raise outcome.broken

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


async def _wait_any(*events: asyncio.Event, within: float) -> None:
    """Return when any event is set or after `within` seconds."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
