"""Commands of the conversations context (public contract)."""

import uuid
from typing import Any

import msgspec

from metachat.conversations.events import Sender

MAX_TEXT = 10_000
"""Longest message text accepted, in characters."""


class OpenConversation(msgspec.Struct, frozen=True, kw_only=True):
    """Start a conversation for a customer on a channel."""

    conversation_id: uuid.UUID
    channel: str
    customer_id: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class PostMessage(msgspec.Struct, frozen=True, kw_only=True):
    """Add a message; `external_id` (the provider's id) makes a retry a no-op."""

    message_id: uuid.UUID
    sender: Sender
    text: str
    author_id: str | None = None
    external_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class AssignConversation(msgspec.Struct, frozen=True, kw_only=True):
    """Give the conversation to a human agent."""

    agent_id: str


class HandOffConversation(msgspec.Struct, frozen=True, kw_only=True):
    """Send the conversation to the humans, with the reason."""

    reason: str


class ReturnToAssistant(msgspec.Struct, frozen=True, kw_only=True):
    """Let the assistant answer again (a human's decision)."""


class ResolveConversation(msgspec.Struct, frozen=True, kw_only=True):
    """Mark the customer's matter as settled."""


class CloseConversation(msgspec.Struct, frozen=True, kw_only=True):
    """Close the conversation for good (until an explicit reopen)."""


class ReopenConversation(msgspec.Struct, frozen=True, kw_only=True):
    """Make a resolved or closed conversation active again."""

    reason: str = "reopened"
