"""A small RabbitMQ probe for readiness and metrics: one shared connection, a channel per use."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import ChannelNotFoundEntity

_TIMEOUT = 3.0


class BrokerProbe:
    """Answers "does the broker respond?" and "how deep is this queue?" without consuming.

    One connection is opened on first use and reused; a failure drops it so the next call
    reconnects (a robust connection would hide an outage behind its own retry loop, which is
    exactly what a readiness check must not do).
    """

    def __init__(self, url: str, *, timeout: float = _TIMEOUT) -> None:
        self._url = url
        self._timeout = timeout
        self._connection: AbstractConnection | None = None
        # One connect at a time: concurrent scrapes must not open a connection each.
        self._lock = asyncio.Lock()

    async def _connect(self) -> AbstractConnection:
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect(self._url, timeout=self._timeout)
            return self._connection

    @asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        try:
            connection = await self._connect()
            channel = await asyncio.wait_for(connection.channel(), self._timeout)
        except BaseException:
            await self.close()
            raise
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()

    async def ping(self) -> None:
        """Open and close a channel; raise if the broker does not answer in time."""
        async with self._channel():
            pass

    async def queue_depth(self, name: str) -> int | None:
        """Return the number of ready messages in a queue, or None if it does not exist."""
        async with self._channel() as channel:
            try:
                queue = await channel.declare_queue(name, passive=True, timeout=self._timeout)
            except ChannelNotFoundEntity:
                return None  # the broker closed this channel; the next call opens another
            return int(queue.declaration_result.message_count or 0)

    async def close(self) -> None:
        """Close the shared connection, if open."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()
