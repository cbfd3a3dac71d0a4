"""The conversation read models: `conversation_list` and `conversation_messages`.

Both are built by the projector from the conversations events with idempotent bulk handlers:
a list row remembers the position of the last event applied to it (`last_position`) and an
update only applies to rows behind the event; a message row is inserted once (its key comes
from the event), so a page applied twice changes nothing the second time. Every table is led
by `tenant_id` (primary key and indexes) and references `tenants.tenant_ids`.
"""

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    bindparam,
    case,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.conversations.events import (
    ConversationAssigned,
    ConversationClosed,
    ConversationHandedOff,
    ConversationOpened,
    ConversationReopened,
    ConversationResolved,
    ConversationReturnedToAssistant,
    MessagePosted,
)
from metachat.conversations.partitions import MESSAGES_TABLE, ensure_months, setup_generation
from metachat.eventstore.envelope import Recorded
from metachat.eventstore.projection import PLACEHOLDER, Handler, Projection

PREVIEW_CHARS = 200
"""Length of `last_message_preview`."""


def _tenant_ids(metadata: MetaData) -> None:
    # Only a foreign-key target (see tenants.projections): never created with a generation.
    Table("tenant_ids", metadata, Column("tenant_id", Uuid, primary_key=True), schema="tenants")


def _tenant_column() -> Column[Any]:
    return Column("tenant_id", Uuid, ForeignKey("tenants.tenant_ids.tenant_id"), nullable=False)


list_metadata = MetaData()
_tenant_ids(list_metadata)

conversation_list = Table(
    "conversation_list",
    list_metadata,
    _tenant_column(),
    Column("conversation_id", Uuid, nullable=False),
    Column("channel", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("handed_off", Boolean, nullable=False),
    Column("assignee", Text),
    Column("last_sender", Text),
    # Derived by PostgreSQL from the columns it depends on, so no handler can get it wrong:
    # the humans have it and either nobody took it or the customer spoke last.
    Column(
        "needs_human_attention",
        Boolean,
        Computed(
            "status = 'assigned_human' AND (assignee IS NULL OR last_sender IS NOT DISTINCT "
            "FROM 'customer')",
            persisted=True,
        ),
    ),
    Column("message_count", Integer, nullable=False),
    Column("last_message_at", DateTime(timezone=True)),
    Column("last_message_preview", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_position", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "conversation_id"),
    schema=PLACEHOLDER,
)
_c = conversation_list.c
Index("conversation_list_updated_idx", _c.tenant_id, _c.updated_at, _c.conversation_id)
Index("conversation_list_status_idx", _c.tenant_id, _c.status, _c.updated_at, _c.conversation_id)

messages_metadata = MetaData()
_tenant_ids(messages_metadata)

conversation_messages = Table(
    MESSAGES_TABLE,
    messages_metadata,
    _tenant_column(),
    Column("conversation_id", Uuid, nullable=False),
    Column("message_id", Uuid, nullable=False),
    Column("sender", Text, nullable=False),
    Column("author_id", Text),
    Column("text", Text, nullable=False),
    Column("external_id", Text),
    Column("metadata", JSONB, nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
    Column("position", BigInteger, nullable=False),
    # A partitioned table's unique keys must contain the partition key.
    PrimaryKeyConstraint("tenant_id", "message_id", "posted_at"),
    schema=PLACEHOLDER,
    postgresql_partition_by="RANGE (posted_at)",
)
_m = conversation_messages.c
Index(
    "conversation_messages_page_idx",
    _m.tenant_id,
    _m.conversation_id,
    _m.posted_at.desc(),
    _m.message_id.desc(),
)

_OPEN = insert(conversation_list).on_conflict_do_nothing(
    index_elements=[_c.tenant_id, _c.conversation_id]
)
_POST = insert(conversation_messages).on_conflict_do_nothing(
    index_elements=[_m.tenant_id, _m.message_id, _m.posted_at]
)


def _guarded(**values: Any) -> Any:
    """An UPDATE of one conversation's row, applied only to rows behind the event."""
    return (
        update(conversation_list)
        .where(
            _c.tenant_id == bindparam("b_tenant"),
            _c.conversation_id == bindparam("b_conversation"),
            _c.last_position < bindparam("b_position"),
        )
        .values(updated_at=bindparam("b_at"), last_position=bindparam("b_position"), **values)
    )


def _params(recorded: Recorded, **extra: Any) -> dict[str, Any]:
    env, event = recorded.envelope, recorded.event
    return {
        "b_tenant": env.tenant_id,
        "b_conversation": getattr(event, "conversation_id"),  # noqa: B009 - every event has it
        "b_position": env.position,
        "b_at": env.occurred_at,
        **extra,
    }


def _updating(statement: Any, extra: Callable[[Any], dict[str, Any]] | None = None) -> Handler:
    async def handle(conn: AsyncConnection, records: Sequence[Recorded]) -> None:
        await conn.execute(
            statement, [_params(r, **(extra(r.event) if extra else {})) for r in records]
        )

    return handle


async def on_opened(conn: AsyncConnection, records: Sequence[Recorded]) -> None:
    """Insert the conversation's row (a second insert of the same conversation is ignored)."""
    rows = []
    for recorded in records:
        event, env = recorded.event, recorded.envelope
        if not isinstance(event, ConversationOpened):
            raise TypeError(f"{env.type} routed to the ConversationOpened handler")
        rows.append(
            {
                "tenant_id": env.tenant_id,
                "conversation_id": event.conversation_id,
                "channel": event.channel,
                "customer_id": event.customer_id,
                "status": "open",
                "handed_off": False,
                "message_count": 0,
                "created_at": env.occurred_at,
                "updated_at": env.occurred_at,
                "last_position": env.position,
            }
        )
    await conn.execute(_OPEN, rows)


def _message(event: Any) -> dict[str, Any]:
    return {
        "b_preview": event.text[:PREVIEW_CHARS],
        "b_sender": event.sender,
    }


_MESSAGE_COUNTED = _guarded(
    message_count=_c.message_count + 1,
    last_message_at=bindparam("b_at"),
    last_message_preview=bindparam("b_preview"),
    last_sender=bindparam("b_sender"),
)

CONVERSATION_LIST = Projection(
    name="conversation_list",
    metadata=list_metadata,
    handlers={
        ConversationOpened.type: on_opened,
        MessagePosted.type: _updating(_MESSAGE_COUNTED, _message),
        ConversationAssigned.type: _updating(
            _guarded(status="assigned_human", handed_off=True, assignee=bindparam("b_agent")),
            lambda event: {"b_agent": event.agent_id},
        ),
        ConversationHandedOff.type: _updating(_guarded(status="assigned_human", handed_off=True)),
        ConversationReturnedToAssistant.type: _updating(
            _guarded(status="open", handed_off=False, assignee=None)
        ),
        ConversationResolved.type: _updating(_guarded(status="resolved")),
        ConversationClosed.type: _updating(_guarded(status="closed")),
        ConversationReopened.type: _updating(
            _guarded(status=case((_c.handed_off, "assigned_human"), else_="open"))
        ),
    },
    views={"conversation_list": "conversations.conversation_list"},
)
"""One row per conversation; events of a conversation share its stream (the default key)."""


async def on_message_posted(conn: AsyncConnection, records: Sequence[Recorded]) -> None:
    """Insert the messages, creating first any month partition they need that is missing."""
    rows, months = [], []
    for recorded in records:
        event, env = recorded.event, recorded.envelope
        months.append(env.occurred_at)
        if not isinstance(event, MessagePosted):
            raise TypeError(f"{env.type} routed to the MessagePosted handler")
        rows.append(
            {
                "tenant_id": env.tenant_id,
                "conversation_id": event.conversation_id,
                "message_id": event.message_id,
                "sender": event.sender,
                "author_id": event.author_id,
                "text": event.text,
                "external_id": event.external_id,
                "metadata": event.metadata,
                "posted_at": env.occurred_at,
                "position": env.position,
            }
        )
    await ensure_months(conn, months)
    await conn.execute(_POST, rows)


CONVERSATION_MESSAGES = Projection(
    name="conversation_messages",
    metadata=messages_metadata,
    handlers={MessagePosted.type: on_message_posted},
    views={MESSAGES_TABLE: f"conversations.{MESSAGES_TABLE}"},
    setup=setup_generation,
)
"""One row per message, in monthly partitions (see `partitions`)."""
