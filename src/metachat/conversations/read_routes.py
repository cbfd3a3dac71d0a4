"""HTTP routes over the conversation read models: the list, and a conversation's messages.

They read the projector's models (`conversations.conversation_list`, `.conversation_messages`),
which trail the event store by the projector's lag: a conversation opened a moment ago may not
be listed yet. Every query is scoped to the caller's tenant, so another tenant's conversation
is simply not found (404).
"""

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from metachat.conversations import queries
from metachat.conversations.events import Sender
from metachat.conversations.handlers import ConversationDeps
from metachat.conversations.model import Status
from metachat.kernel.errors import AuthenticationError, NotFoundError

READ = {"scope": "conversations:read"}
Limit = Annotated[int, QueryParameter(ge=1, le=queries.MAX_PAGE, description="Page size.")]


class ConversationItemOut(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation as the list shows it."""

    id: uuid.UUID
    channel: str
    customer_id: str
    status: Status
    handed_off: bool
    assignee: str | None
    needs_human_attention: bool
    message_count: int
    last_message_at: datetime | None
    last_message_preview: str | None
    created_at: datetime
    updated_at: datetime


class ConversationListOut(msgspec.Struct, frozen=True, kw_only=True):
    """A page of conversations, the cursor of the next page and the counts per status."""

    items: list[ConversationItemOut]
    next_cursor: str | None
    counts: dict[str, int]


class MessageItemOut(msgspec.Struct, frozen=True, kw_only=True):
    """One message."""

    id: uuid.UUID
    conversation_id: uuid.UUID
    sender: Sender
    author_id: str | None
    text: str
    external_id: str | None
    metadata: dict[str, Any]
    posted_at: datetime


class MessagePageOut(msgspec.Struct, frozen=True, kw_only=True):
    """Messages newest first; `next_cursor` (pass it as `before`) pages further back."""

    items: list[MessageItemOut]
    next_cursor: str | None


def _tenant_of(request: Request[Any, Any, Any]) -> uuid.UUID:
    tenant_id = getattr(request.scope.get("auth"), "tenant_id", None)
    if not isinstance(tenant_id, uuid.UUID):
        raise AuthenticationError("not authenticated")
    return tenant_id


def _item(row: queries.ConversationSummary) -> ConversationItemOut:
    return ConversationItemOut(
        id=row.conversation_id,
        channel=row.channel,
        customer_id=row.customer_id,
        status=row.status,
        handed_off=row.handed_off,
        assignee=row.assignee,
        needs_human_attention=row.needs_human_attention,
        message_count=row.message_count,
        last_message_at=row.last_message_at,
        last_message_preview=row.last_message_preview,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _message(row: queries.MessageItem) -> MessageItemOut:
    return MessageItemOut(
        id=row.message_id,
        conversation_id=row.conversation_id,
        sender=row.sender,
        author_id=row.author_id,
        text=row.text,
        external_id=row.external_id,
        metadata=row.metadata,
        posted_at=row.posted_at,
    )


class ConversationReadController(Controller):
    """The conversation list and a conversation's messages, from the read models."""

    path = "/conversations"
    tags = ["conversations"]  # noqa: RUF012 - Litestar's layer attribute

    @get("/", opt=READ, summary="List conversations")
    async def list_conversations(
        self,
        *,
        request: Request[Any, Any, Any],
        conversation_deps: NamedDependency[ConversationDeps],
        status: FromQuery[Status | None] = None,
        channel: FromQuery[str | None] = None,
        assignee: FromQuery[str | None] = None,
        needs_human_attention: FromQuery[bool | None] = None,
        updated_since: FromQuery[datetime | None] = None,
        limit: Limit = 50,
        cursor: FromQuery[str | None] = None,
    ) -> ConversationListOut:
        """Return the tenant's conversations, most recently updated first, with counts."""
        tenant_id = _tenant_of(request)
        async with conversation_deps.store.engine.connect() as conn:
            page = await queries.list_conversations(
                conn,
                tenant_id=tenant_id,
                status=status,
                channel=channel,
                assignee=assignee,
                needs_human=needs_human_attention,
                updated_since=updated_since,
                limit=limit,
                cursor=cursor,
            )
            counts = await queries.count_by_status(conn, tenant_id=tenant_id)
        return ConversationListOut(
            items=[_item(row) for row in page.items], next_cursor=page.next_cursor, counts=counts
        )

    @get("/{conversation_id:uuid}/messages", opt=READ, summary="A conversation's messages")
    async def list_messages(
        self,
        *,
        request: Request[Any, Any, Any],
        conversation_deps: NamedDependency[ConversationDeps],
        conversation_id: FromPath[uuid.UUID],
        limit: Limit = 50,
        before: FromQuery[str | None] = None,
    ) -> MessagePageOut:
        """Return messages newest first; pass `next_cursor` as `before` for older ones."""
        tenant_id = _tenant_of(request)
        async with conversation_deps.store.engine.connect() as conn:
            found = await queries.get_conversation(
                conn, tenant_id=tenant_id, conversation_id=conversation_id
            )
            if found is None:
                raise NotFoundError("conversation not found")
            page = await queries.list_messages(
                conn,
                tenant_id=tenant_id,
                conversation_id=conversation_id,
                limit=limit,
                before=before,
            )
        return MessagePageOut(
            items=[_message(row) for row in page.items], next_cursor=page.next_cursor
        )


ROUTES = (ConversationReadController,)
"""The read routes, registered under `/v1` by the API assembly."""
