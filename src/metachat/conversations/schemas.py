"""HTTP request and response bodies of the conversations API (never the events themselves)."""

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from metachat.conversations.commands import MAX_TEXT
from metachat.conversations.events import Sender
from metachat.conversations.model import MAX_FIELD, Status
from metachat.conversations.views import ConversationView, MessageView

Short = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FIELD)]
Text = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_TEXT, examples=["Where is my order?"])
]
ExternalId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_FIELD,
        description="The provider's message id: the same id in a conversation is stored once.",
    ),
]
Metadata = Annotated[dict[str, Any], msgspec.Meta(description="Free-form JSON, kept as given.")]


class OpenConversationIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Open a conversation for a customer on a channel."""

    channel: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FIELD, examples=["api"])]
    customer_id: Short
    metadata: Metadata = msgspec.field(default_factory=dict)


class CustomerMessageIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A message from the customer."""

    text: Text
    external_id: ExternalId | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class AgentMessageIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A message from a human agent; `author_id` names the agent when an API key posts it."""

    text: Text
    author_id: Short | None = None
    external_id: ExternalId | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class AssistantMessageIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A message from the assistant: refused while the humans have the conversation."""

    text: Text
    metadata: Metadata = msgspec.field(default_factory=dict)


class AssignIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The agent who takes the conversation."""

    agent_id: Short


class HandOffIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Why the conversation goes to the humans."""

    reason: Short


class ConversationOut(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation's current state."""

    id: uuid.UUID
    status: Status
    handed_off: bool
    assignee: str | None
    channel: str
    customer_id: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, view: ConversationView) -> "ConversationOut":
        """The answer for a conversation view."""
        return cls(
            id=view.conversation_id,
            status=view.status,
            handed_off=view.handed_off,
            assignee=view.assignee,
            channel=view.channel,
            customer_id=view.customer_id,
            metadata=view.metadata,
            created_at=view.created_at,
            updated_at=view.updated_at,
            version=view.version,
        )


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    """A stored message."""

    id: uuid.UUID
    conversation_id: uuid.UUID
    sender: Sender
    author_id: str | None
    text: str
    external_id: str | None
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, view: MessageView) -> "MessageOut":
        """The answer for a message view."""
        return cls(
            id=view.message_id,
            conversation_id=view.conversation_id,
            sender=view.sender,
            author_id=view.author_id,
            text=view.text,
            external_id=view.external_id,
            metadata=view.metadata,
            created_at=view.created_at,
        )
