"""Ephemeral live updates of a conversation: the assistant's reply, piece by piece.

A reply being generated is not an event: its text is stored once complete (`message_posted`).
While it is generated, its pieces go to the conversation's open streams through PostgreSQL
`NOTIFY metachat_live` (sent in autocommit, outside any transaction), and the API's
`StreamHub` hands each to the streams of that tenant's conversation. A listener that is not
connected misses the pieces and loses nothing: the complete message follows on the event stream.
"""

import time
import uuid
from typing import Any

import msgspec
import psycopg

LIVE_CHANNEL = "metachat_live"
FLUSH_SECONDS = 0.05
"""Pieces are gathered this long into one notification (a fast model makes hundreds a second)."""
_MAX_TEXT = 6_000
"""Characters per notification: NOTIFY payloads must stay under 8,000 bytes."""


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
        conn: psycopg.AsyncConnection[Any],
        *,
        tenant_id: uuid.UUID,
        conversation_id: uuid.UUID,
        reply_id: uuid.UUID,
    ) -> None:
        self._conn = conn
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
            payload = msgspec.json.encode(delta).decode()
            await self._conn.execute("SELECT pg_notify(%s, %s)", (LIVE_CHANNEL, payload))


class LivePublisher:
    """One autocommit connection per process that sends every reply's pieces."""

    def __init__(self, libpq_url: str) -> None:
        self._url = libpq_url
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def open(
        self, *, tenant_id: uuid.UUID, conversation_id: uuid.UUID, reply_id: uuid.UUID
    ) -> LiveReply:
        """Start sending one reply's pieces."""
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        return LiveReply(
            self._conn, tenant_id=tenant_id, conversation_id=conversation_id, reply_id=reply_id
        )

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            await self._conn.close()
