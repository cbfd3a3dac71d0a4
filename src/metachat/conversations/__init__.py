"""Conversations: a customer's conversation with the assistant and the tenant's humans.

Owns: the conversation streams, the conversation list and message read models.
Publishes: `conversations.conversation_opened`, `conversations.message_posted` (with the text),
`conversations.conversation_assigned`, `..._handed_off`, `..._returned_to_assistant`,
`..._resolved`, `..._closed`, `..._reopened`, `conversations.review_requested`.
Consumes: nothing; the orchestrator (and later the channels) act through its public use cases.
"""

from metachat.conversations.handlers import (
    Context,
    ConversationDeps,
    History,
    NewStream,
    deliver_assistant_reply,
    load_history,
)
from metachat.conversations.model import IllegalTransitionError
from metachat.conversations.views import MessageView

__all__ = [
    "Context",
    "ConversationDeps",
    "History",
    "IllegalTransitionError",
    "MessageView",
    "NewStream",
    "deliver_assistant_reply",
    "load_history",
]
