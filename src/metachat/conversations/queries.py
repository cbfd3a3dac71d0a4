"""Read-side queries of the conversations context, over the stable `conversations.*` views.

Every query takes the caller's `tenant_id` and filters on it first (every index is led by it).
Pages use keyset pagination behind an opaque cursor (base64 of the last row's sort key), so a
page costs the same however deep it is, and rows are neither skipped nor repeated between
pages unless they change meanwhile (a conversation updated while paging moves to the top).
"""

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import msgspec
from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.conversations.partitions import MESSAGES_TABLE
from metachat.conversations.projections import CONVERSATION_LIST, CONVERSATION_MESSAGES
from metachat.kernel.errors import ValidationError

T = TypeVar("T")

MAX_PAGE = 200
STATUSES = ("open", "assigned_human", "resolved", "closed")

_list = CONVERSATION_LIST.view_table("conversation_list")
_c = _list.c
_messages = CONVERSATION_MESSAGES.view_table(MESSAGES_TABLE)
_m = _messages.c


class ConversationSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One conversation as the list shows it."""

    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    channel: str
    customer_id: str
    status: Literal["open", "assigned_human", "resolved", "closed"]
    handed_off: bool
    assignee: str | None
    needs_human_attention: bool
    message_count: int
    last_message_at: datetime | None
    last_message_preview: str | None
    created_at: datetime
    updated_at: datetime
    last_position: int


class MessageItem(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a conversation."""

    conversation_id: uuid.UUID
    message_id: uuid.UUID
    sender: Literal["customer", "agent", "assistant"]
    author_id: str | None
    text: str
    external_id: str | None
    metadata: dict[str, Any]
    posted_at: datetime
    position: int


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """A page of items and the cursor of the next one (None: this was the last)."""

    items: list[T]
    next_cursor: str | None


def _encode(moment: datetime, ident: uuid.UUID) -> str:
    raw = msgspec.json.encode([moment.isoformat(), str(ident)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, field: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, ident = msgspec.json.decode(raw, type=tuple[datetime, uuid.UUID])
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise ValidationError(f"{field} is not a cursor this API issued", field=field) from exc
    return moment, ident


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


async def list_conversations(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    status: str | None = None,
    channel: str | None = None,
    assignee: str | None = None,
    needs_human: bool | None = None,
    updated_since: datetime | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[ConversationSummary]:
    """Return a tenant's conversations, most recently updated first, filtered and paged.

    Raises:
        ValidationError: `cursor` was not issued by this query, or a filter holds NUL.
    """
    for field, text_value in (("channel", channel), ("assignee", assignee)):
        if text_value is not None and "\x00" in text_value:  # PostgreSQL text refuses NUL
            raise ValidationError(f"{field} must not contain NUL characters", field=field)
    query = select(_list).where(_c.tenant_id == tenant_id)
    for column, value in (
        (_c.status, status),
        (_c.channel, channel),
        (_c.assignee, assignee),
        (_c.needs_human_attention, needs_human),
    ):
        if value is not None:
            query = query.where(column == value)
    if updated_since is not None:
        query = query.where(_c.updated_at >= updated_since)
    if cursor is not None:
        query = query.where(tuple_(_c.updated_at, _c.conversation_id) < _decode(cursor, "cursor"))
    size = _limit(limit)
    query = query.order_by(_c.updated_at.desc(), _c.conversation_id.desc()).limit(size + 1)
    rows = (await conn.execute(query)).all()
    items = [msgspec.convert(r, ConversationSummary, from_attributes=True) for r in rows[:size]]
    more = len(rows) > size
    last = items[-1] if more else None
    return Page(
        items=items,
        next_cursor=_encode(last.updated_at, last.conversation_id) if last else None,
    )


async def count_by_status(conn: AsyncConnection, *, tenant_id: uuid.UUID) -> dict[str, int]:
    """Return how many of a tenant's conversations are in each status (every status listed)."""
    query = (
        select(_c.status, func.count().label("n"))
        .where(_c.tenant_id == tenant_id)
        .group_by(_c.status)
    )
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({row.status: int(row.n) for row in await conn.execute(query)})
    return counts


async def get_conversation(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> ConversationSummary | None:
    """Return one of the tenant's conversations, or None (another tenant's is None too)."""
    query = select(_list).where(_c.tenant_id == tenant_id, _c.conversation_id == conversation_id)
    row = (await conn.execute(query)).first()
    return None if row is None else msgspec.convert(row, ConversationSummary, from_attributes=True)


async def list_messages(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    limit: int,
    before: str | None = None,
) -> Page[MessageItem]:
    """Return a conversation's messages newest first; `before` is the previous page's cursor.

    Raises:
        ValidationError: `before` was not issued by this query.
    """
    query = select(_messages).where(
        _m.tenant_id == tenant_id, _m.conversation_id == conversation_id
    )
    if before is not None:
        query = query.where(tuple_(_m.posted_at, _m.message_id) < _decode(before, "before"))
    size = _limit(limit)
    query = query.order_by(_m.posted_at.desc(), _m.message_id.desc()).limit(size + 1)
    rows = (await conn.execute(query)).all()
    items = [msgspec.convert(r, MessageItem, from_attributes=True) for r in rows[:size]]
    last = items[-1] if len(rows) > size else None
    return Page(items=items, next_cursor=_encode(last.posted_at, last.message_id) if last else None)
