"""A conversation and its messages as the command side answers them, built from the stream."""

import uuid
from datetime import datetime
from typing import Any

import msgspec

from metachat.conversations import model
from metachat.conversations.events import ConversationOpened, MessagePosted, Sender
from metachat.eventstore.envelope import Recorded


class ConversationView(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation's current state with the facts it was opened with."""

    conversation_id: uuid.UUID
    status: model.Status
    handed_off: bool
    assignee: str | None
    channel: str
    customer_id: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    """One stored message."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    sender: Sender
    author_id: str | None
    text: str
    external_id: str | None
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, recorded: Recorded) -> "MessageView":
        """The message a recorded `MessagePosted` event holds."""
        event = recorded.event
        if not isinstance(event, MessagePosted):
            raise TypeError(f"not a posted message: {recorded.envelope.type}")
        return cls(
            message_id=event.message_id,
            conversation_id=event.conversation_id,
            sender=event.sender,
            author_id=event.author_id,
            text=event.text,
            external_id=event.external_id,
            metadata=event.metadata,
            created_at=recorded.envelope.occurred_at,
        )


def conversation_view(recorded: list[Recorded]) -> ConversationView:
    """Fold a whole conversation stream (first event: `ConversationOpened`) into its view."""
    opened = recorded[0].event
    if not isinstance(opened, ConversationOpened):
        raise TypeError(f"a conversation stream starts with {recorded[0].envelope.type}")
    state = model.replay([r.event for r in recorded])
    return ConversationView(
        conversation_id=opened.conversation_id,
        status=state.status,
        handed_off=state.handed_off,
        assignee=state.assignee,
        channel=opened.channel,
        customer_id=opened.customer_id,
        metadata=opened.metadata,
        created_at=recorded[0].envelope.occurred_at,
        updated_at=recorded[-1].envelope.occurred_at,
        version=recorded[-1].envelope.stream_version,
    )
