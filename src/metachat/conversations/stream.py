"""Live updates of one conversation as Server-Sent Events, read from its event stream.

`GET /v1/conversations/{conversation_id}/stream` sends every event of the conversation committed
after the client's `Last-Event-ID` (all of them without it): `id:` is the stream version,
`event:` the event type, `data:` JSON with `type`, `occurred_at` and `payload`. A browser's
EventSource resumes by itself with the last id it saw, so a reconnect never loses or repeats one.

Tailing by stream version (not by global position) needs no gap-free fence: a stream's versions
are taken under optimistic concurrency, so version n+1 can only be written once version n has
committed, and a reader that saw n+1 has necessarily seen n.

One `StreamHub` per process holds one LISTEN connection on the events channel and wakes every
open stream on each notification; each stream then asks for its own new events, so one
notification costs one indexed query per open stream. A poll interval covers lost
notifications, and a comment line every 15 s keeps proxies from closing an idle connection.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy import text

from metachat.conversations.model import stream_id
from metachat.eventstore.postgres import PostgresEventStore
from metachat.eventstore.projection.wakeup import Wakeup
from metachat.kernel.errors import AuthenticationError, NotFoundError

KEEP_ALIVE_SECONDS = 15.0
POLL_SECONDS = 2.0
_PAGE = 500

_READ_AFTER = text("""
SELECT position, event_id, tenant_id, stream_id, stream_version, type, schema_version,
       occurred_at, correlation_id, causation_id, actor, payload
FROM eventstore.events
WHERE stream_id = :stream_id AND tenant_id = :tenant_id AND stream_version > :after
ORDER BY stream_version
LIMIT :limit
""")
_EXISTS = text(
    "SELECT EXISTS (SELECT 1 FROM eventstore.events "
    "WHERE stream_id = :stream_id AND tenant_id = :tenant_id)"
)
_encoder = msgspec.json.Encoder()


class StreamHub:
    """The process's one LISTEN connection, fanned out to every open event stream."""

    def __init__(self, libpq_url: str) -> None:
        self._wakeup = Wakeup(libpq_url)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Event]:
        """Yield an event set on every notification until the block ends."""
        if self._task is None:
            # Started on first use, on the serving loop: an app that never streams never
            # holds the connection.
            self._task = asyncio.create_task(self._wakeup.run(self._stop), name="stream-hub")
        woken = asyncio.Event()
        self._wakeup.add(woken)
        try:
            yield woken
        finally:
            self._wakeup.discard(woken)

    async def close(self) -> None:
        """Stop listening (the app's shutdown hook)."""
        self._stop.set()
        if self._task is not None:
            await self._task


class StreamReader:
    """Reads one tenant's conversation streams; shared by the route and its tests."""

    def __init__(
        self,
        store: PostgresEventStore,
        hub: StreamHub,
        *,
        keep_alive: float = KEEP_ALIVE_SECONDS,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.store = store
        self.hub = hub
        self._keep_alive = keep_alive
        self._poll = poll

    async def exists(self, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
        """True when the conversation exists and belongs to `tenant_id`."""
        async with self.store.engine.connect() as conn:
            found = await conn.scalar(
                _EXISTS, {"stream_id": stream_id(conversation_id), "tenant_id": tenant_id}
            )
        return bool(found)

    async def events_after(
        self, tenant_id: uuid.UUID, conversation_id: uuid.UUID, after: int
    ) -> list[ServerSentEventMessage]:
        """The conversation's events after stream version `after`, as SSE messages."""
        params = {
            "stream_id": stream_id(conversation_id),
            "tenant_id": tenant_id,
            "after": after,
            "limit": _PAGE,
        }
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(_READ_AFTER, params)).all()
        return [_message(self.store, row) for row in rows]

    async def messages(
        self, tenant_id: uuid.UUID, conversation_id: uuid.UUID, after: int
    ) -> AsyncIterator[ServerSentEventMessage]:
        """Yield events after `after` as they commit, and keep-alive comments, until closed."""
        loop = asyncio.get_running_loop()
        with self.hub.subscription() as woken:
            sent_at = loop.time()
            while True:
                # Cleared before reading: a notification that arrives during the read sets it
                # again, so the next wait returns at once instead of missing that commit.
                woken.clear()
                page = await self.events_after(tenant_id, conversation_id, after)
                for message in page:
                    yield message
                    after = int(str(message.id))
                    sent_at = loop.time()
                if len(page) == _PAGE:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self._poll)
                if loop.time() - sent_at >= self._keep_alive:
                    yield ServerSentEventMessage(data=None, comment="keep-alive")
                    sent_at = loop.time()


def _message(store: PostgresEventStore, row: Any) -> ServerSentEventMessage:
    recorded = store.decode_row(row)
    envelope = recorded.envelope
    data = {
        "type": envelope.type,
        "occurred_at": envelope.occurred_at,
        "payload": store.registry.to_builtins(recorded.event),
    }
    return ServerSentEventMessage(
        id=envelope.stream_version, event=envelope.type, data=_encoder.encode(data).decode()
    )


def _tenant_of(request: Request[Any, Any, Any]) -> uuid.UUID:
    tenant_id = getattr(request.scope.get("auth"), "tenant_id", None)
    if not isinstance(tenant_id, uuid.UUID):
        raise AuthenticationError("not authenticated")
    return tenant_id


LastEventId = Annotated[
    int | None,
    HeaderParameter(
        name="Last-Event-ID",
        ge=0,
        description="Resume after this stream version (the last `id:` received).",
    ),
]


class ConversationStreamController(Controller):
    """Server-Sent Events of one conversation."""

    path = "/conversations"
    tags = ["conversations"]  # noqa: RUF012 - Litestar's layer attribute

    @get(
        "/{conversation_id:uuid}/stream",
        opt={"scope": "conversations:read"},
        media_type="text/event-stream",
        summary="Live events of a conversation (Server-Sent Events)",
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        conversation_id: FromPath[uuid.UUID],
        stream_reader: NamedDependency[StreamReader],
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        """Stream each new message and state change as it commits; resumes from Last-Event-ID."""
        tenant_id = _tenant_of(request)
        if not await stream_reader.exists(tenant_id, conversation_id):
            raise NotFoundError("no such conversation", conversation_id=str(conversation_id))
        return ServerSentEvent(
            stream_reader.messages(tenant_id, conversation_id, last_event_id or 0)
        )
