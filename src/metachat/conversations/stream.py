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

The same connection listens for the assistant's reply as it is generated (`live`): each piece
goes to the open streams of its tenant's conversation as `event: assistant.delta` with
`reply_id`, `round`, `seq`, `text` and `done`, and no `id:` (pieces are not replayed on resume;
the complete message follows as `conversations.message_posted`).
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import msgspec
import psycopg
import structlog
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy import text

from metachat.conversations.live import LIVE_CHANNEL, LiveDelta, decode_delta
from metachat.conversations.model import stream_id
from metachat.eventstore.notify import CHANNEL
from metachat.eventstore.postgres import PostgresEventStore
from metachat.kernel.errors import AuthenticationError, NotFoundError

KEEP_ALIVE_SECONDS = 15.0
POLL_SECONDS = 2.0
LIVE_EVENT = "assistant.delta"
"""The SSE event of a live reply piece (no `id:`: pieces are not replayed on resume)."""
_PAGE = 500
_INBOX = 1_000
_RECONNECT_AFTER = 1.0

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
log = structlog.get_logger()


class Subscription:
    """One open stream's inbox: a wake-up when events committed, and live reply pieces."""

    def __init__(self, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> None:
        self.key = (tenant_id, conversation_id)
        self.inbox: asyncio.Queue[LiveDelta | None] = asyncio.Queue(maxsize=_INBOX)
        self._wake_pending = False

    def wake(self) -> None:
        """Ask the stream to read its new events (at most one wake-up waits at a time)."""
        if not self._wake_pending:
            self._wake_pending = True
            self._put(None)

    def live(self, delta: LiveDelta) -> None:
        """Hand over a live piece; dropped if the client is far behind (the message follows)."""
        self._put(delta)

    def _put(self, item: LiveDelta | None) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.inbox.put_nowait(item)

    async def next(self, seconds: float) -> LiveDelta | None:
        """The next live piece, or None for a wake-up or when `seconds` passed."""
        try:
            item = await asyncio.wait_for(self.inbox.get(), seconds)
        except TimeoutError:
            return None
        if item is None:
            self._wake_pending = False
        return item


class StreamHub:
    """The process's one LISTEN connection, fanned out to every open event stream."""

    def __init__(self, libpq_url: str) -> None:
        self._url = libpq_url
        self._subscriptions: set[Subscription] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def subscription(
        self, tenant_id: uuid.UUID, conversation_id: uuid.UUID
    ) -> Iterator[Subscription]:
        """Yield an inbox of wake-ups and of this conversation's live pieces, until the end."""
        if self._task is None:
            # Started on first use, on the serving loop: an app that never streams never
            # holds the connection.
            self._task = asyncio.create_task(self._run(), name="stream-hub")
        subscription = Subscription(tenant_id, conversation_id)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def _wake_all(self) -> None:
        for subscription in self._subscriptions:
            subscription.wake()

    def _route(self, payload: str) -> None:
        delta = decode_delta(payload)
        if delta is None:
            return
        key = (delta.tenant_id, delta.conversation_id)  # a tenant's pieces reach only its streams
        for subscription in self._subscriptions:
            if subscription.key == key:
                subscription.live(delta)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                log.warning("stream_hub_reconnecting", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), _RECONNECT_AFTER)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            await conn.execute(f"LISTEN {LIVE_CHANNEL}")
            # Anything committed while we were not listening would otherwise wait for a poll.
            self._wake_all()
            while not self._stop.is_set():
                async for notification in conn.notifies(timeout=_RECONNECT_AFTER):
                    if notification.channel == LIVE_CHANNEL:
                        self._route(notification.payload)
                    else:
                        self._wake_all()

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
        """Yield events after `after` as they commit, live reply pieces, and keep-alive comments."""
        loop = asyncio.get_running_loop()
        with self.hub.subscription(tenant_id, conversation_id) as inbox:
            sent_at = loop.time()
            while True:
                page = await self.events_after(tenant_id, conversation_id, after)
                for message in page:
                    yield message
                    after = int(str(message.id))
                    sent_at = loop.time()
                if len(page) == _PAGE:
                    continue
                # Live pieces are passed on as they come; a wake-up (or the poll interval)
                # goes back to reading the stream. A wake-up that arrives during the read
                # waits in the inbox, so no commit is missed.
                while (delta := await inbox.next(self._poll)) is not None:
                    yield _live_message(delta)
                    sent_at = loop.time()
                if loop.time() - sent_at >= self._keep_alive:
                    yield ServerSentEventMessage(data=None, comment="keep-alive")
                    sent_at = loop.time()


def _live_message(delta: LiveDelta) -> ServerSentEventMessage:
    data = {
        "reply_id": str(delta.reply_id),
        "round": delta.round,
        "seq": delta.seq,
        "text": delta.text,
        "done": delta.done,
    }
    return ServerSentEventMessage(event=LIVE_EVENT, data=_encoder.encode(data).decode())


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
