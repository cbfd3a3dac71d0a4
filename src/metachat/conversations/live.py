"""Ephemeral live updates of a conversation: the assistant's reply, piece by piece.

A reply being generated is not an event: its text is stored once complete (`message_posted`).
While it is generated, its pieces go to the conversation's open streams through PostgreSQL
`NOTIFY metachat_live` (sent in autocommit, outside any transaction), and the API's
`StreamHub` hands each to the streams of that tenant's conversation. A listener that is not
connected misses the pieces and loses nothing: the complete message follows on the event stream.

A reply never waits for its notifications: its pieces are queued, and one sender per process
sends everything queued in one statement per round trip. (Awaiting each NOTIFY on the process's
one connection made every reply of a busy process queue behind all the others' pieces.) The
queue is bounded; past it the oldest pieces are dropped, which live listeners tolerate.
"""

import asyncio
import collections
import contextlib
import time
import uuid

import msgspec
import psycopg
import structlog

log = structlog.get_logger()

LIVE_CHANNEL = "metachat_live"
FLUSH_SECONDS = 0.05
"""Pieces are gathered this long into one notification (a fast model makes hundreds a second)."""
_MAX_TEXT = 6_000
"""Characters per notification: NOTIFY payloads must stay under 8,000 bytes."""
MAX_QUEUED = 10_000
"""Notifications waiting to be sent, at most (the oldest are dropped first)."""
_NOTIFY_MANY = (
    "SELECT pg_notify(%s, p) FROM unnest(CAST(%s AS text[])) WITH ORDINALITY AS t(p, n) ORDER BY n"
)
_RECONNECT_AFTER = 1.0


class LiveDelta(msgspec.Struct, frozen=True, kw_only=True):
    """One notification: a piece of a reply of one conversation."""

    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    reply_id: uuid.UUID
    round: int
    seq: int
    text: str
    done: bool = False


_decoder = msgspec.json.Decoder(LiveDelta)


def decode_delta(payload: str) -> LiveDelta | None:
    """The delta a notification carries, or None for a payload that is not one."""
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class LiveReply:
    """Sends one reply's pieces as it is generated, gathered into few notifications."""

    def __init__(
        self,
        publisher: "LivePublisher",
        *,
        tenant_id: uuid.UUID,
        conversation_id: uuid.UUID,
        reply_id: uuid.UUID,
    ) -> None:
        self._publisher = publisher
        self._ids = {"tenant_id": tenant_id, "conversation_id": conversation_id}
        self.reply_id = reply_id
        self._pending: list[str] = []
        self._round = 0
        self._seq = 0
        self._flushed_at = time.monotonic()

    async def delta(self, text: str, *, round_number: int) -> None:
        """Add a piece; send what has gathered when the flush interval has passed."""
        if round_number != self._round:
            await self._flush()
            self._round = round_number
        self._pending.append(text)
        if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            await self._flush()

    async def close(self) -> None:
        """Send what is left and say the reply is complete."""
        await self._flush(done=True)

    async def _flush(self, *, done: bool = False) -> None:
        text = "".join(self._pending)
        self._pending.clear()
        self._flushed_at = time.monotonic()
        if not text and not done:
            return
        for start in range(0, max(len(text), 1), _MAX_TEXT):
            piece = text[start : start + _MAX_TEXT]
            last = start + _MAX_TEXT >= len(text)
            delta = LiveDelta(
                **self._ids,
                reply_id=self.reply_id,
                round=self._round,
                seq=self._seq,
                text=piece,
                done=done and last,
            )
            self._seq += 1
            self._publisher.send(msgspec.json.encode(delta).decode())


class LivePublisher:
    """The process's sender of every reply's pieces, on one autocommit connection."""

    def __init__(self, libpq_url: str) -> None:
        self._url = libpq_url
        self._queued: collections.deque[str] = collections.deque(maxlen=MAX_QUEUED)
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    async def open(
        self, *, tenant_id: uuid.UUID, conversation_id: uuid.UUID, reply_id: uuid.UUID
    ) -> LiveReply:
        """Start sending one reply's pieces."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="live-publisher")
        return LiveReply(
            self, tenant_id=tenant_id, conversation_id=conversation_id, reply_id=reply_id
        )

    def send(self, payload: str) -> None:
        """Queue one notification; never waits."""
        self._queued.append(payload)
        self._wanted.set()

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    while True:
                        await self._wanted.wait()
                        self._wanted.clear()
                        batch = list(self._queued)
                        self._queued.clear()
                        if batch:
                            await conn.execute(_NOTIFY_MANY, (LIVE_CHANNEL, batch))
                            self.sent += len(batch)
            except (psycopg.Error, OSError) as exc:
                log.warning("live_publisher_reconnecting", error=str(exc))
                await asyncio.sleep(_RECONNECT_AFTER)

    async def close(self) -> None:
        """Send what is queued (briefly), then stop."""
        if self._task is None:
            return
        for _ in range(20):
            if not self._queued:
                break
            await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
