"""Commands of the conversations context (public contract)."""

import uuid
from typing import Any, Literal

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


AssistantAction = Literal["send", "send_with_disclaimer", "send_and_review", "hand_off"]


class DeliverAssistantReply(msgspec.Struct, frozen=True, kw_only=True):
    """The assistant's outcome for the customer messages it answered, applied as one change.

    `send` and `send_with_disclaimer` post `text`; `send_and_review` posts it and asks a human to
    check it; `hand_off` posts `text` (the tenant's hand-off wording) and hands the conversation
    to the humans. The reply's external id is `reply:<last message answered>`, so a replayed
    customer message can never get a second reply. `details` (decision, score, signals, model,
    usage) is recorded on the events for operators.
    """

    message_id: uuid.UUID
    text: str
    in_reply_to: tuple[uuid.UUID, ...]
    action: AssistantAction
    reason: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def external_id(self) -> str:
        """The reply's dedup key: one reply per last customer message answered."""
        return f"reply:{self.in_reply_to[-1]}"
