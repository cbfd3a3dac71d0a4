"""Events of the conversations context (public contract)."""

import uuid
from typing import Any, Literal

import msgspec

from metachat.eventstore.envelope import Event

Sender = Literal["customer", "agent", "assistant"]


class ConversationOpened(Event, frozen=True, kw_only=True):
    """A customer's conversation started on a channel."""

    type = "conversations.conversation_opened"
    version = 1
    conversation_id: uuid.UUID
    channel: str
    customer_id: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class MessagePosted(Event, frozen=True, kw_only=True):
    """A message was added by the customer, a human agent or the assistant."""

    type = "conversations.message_posted"
    version = 1
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    sender: Sender
    author_id: str | None = None
    text: str
    external_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class ConversationAssigned(Event, frozen=True, kw_only=True):
    """A human agent took the conversation."""

    type = "conversations.conversation_assigned"
    version = 1
    conversation_id: uuid.UUID
    agent_id: str


class ConversationHandedOff(Event, frozen=True, kw_only=True):
    """The conversation went to the humans; the assistant stays out until it is given back."""

    type = "conversations.conversation_handed_off"
    version = 1
    conversation_id: uuid.UUID
    reason: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    """Why, for an operator: the assistant's decision, score and signals when it handed off."""


class ConversationReviewRequested(Event, frozen=True, kw_only=True):
    """The assistant answered but asks a human to check its answer; it keeps the conversation."""

    type = "conversations.review_requested"
    version = 1
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    reason: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class ConversationReturnedToAssistant(Event, frozen=True, kw_only=True):
    """A human gave the conversation back to the assistant."""

    type = "conversations.conversation_returned_to_assistant"
    version = 1
    conversation_id: uuid.UUID


class ConversationResolved(Event, frozen=True, kw_only=True):
    """The customer's matter was settled; a new customer message reopens it."""

    type = "conversations.conversation_resolved"
    version = 1
    conversation_id: uuid.UUID


class ConversationClosed(Event, frozen=True, kw_only=True):
    """The conversation was closed; only an explicit reopen brings it back."""

    type = "conversations.conversation_closed"
    version = 1
    conversation_id: uuid.UUID


class ConversationReopened(Event, frozen=True, kw_only=True):
    """A resolved or closed conversation became active again."""

    type = "conversations.conversation_reopened"
    version = 1
    conversation_id: uuid.UUID
    reason: str


EVENTS: tuple[type[Event], ...] = (
    ConversationOpened,
    MessagePosted,
    ConversationAssigned,
    ConversationHandedOff,
    ConversationReviewRequested,
    ConversationReturnedToAssistant,
    ConversationResolved,
    ConversationClosed,
    ConversationReopened,
)
