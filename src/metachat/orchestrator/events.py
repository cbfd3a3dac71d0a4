"""Events of the orchestrator (public contract): what each reply cost and which tools it ran.

They live in one stream per reply (`reply-<reply message id>`), appended once with the reply's
outcome, so no two writers ever share a stream. The reply itself, the review request and the
hand-off are conversation events (`conversations.*`), written through its commands.
"""

import uuid
from typing import Any

from metachat.eventstore.envelope import Event


class ModelCalled(Event, frozen=True, kw_only=True):
    """One call to a language model for a reply: who answered, tokens, cost, time."""

    type = "orchestrator.model_called"
    version = 1
    conversation_id: uuid.UUID
    reply_id: uuid.UUID
    round: int
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int
    priced: bool
    """False when the model is missing from the price table (its cost is counted as 0)."""
    latency_ms: int
    finish_reason: str


class ToolCalled(Event, frozen=True, kw_only=True):
    """A tool the model called while answering, with what it answered."""

    type = "orchestrator.tool_called"
    version = 1
    conversation_id: uuid.UUID
    reply_id: uuid.UUID
    call_id: str
    tool: str
    arguments: dict[str, Any]
    result: str
    error: str | None = None
    duration_ms: int = 0


class ReplyFailed(Event, frozen=True, kw_only=True):
    """No model could answer; the conversation was handed to a human with the reasons."""

    type = "orchestrator.reply_failed"
    version = 1
    conversation_id: uuid.UUID
    reply_id: uuid.UUID
    reason: str
    errors: list[str]


EVENTS: tuple[type[Event], ...] = (ModelCalled, ToolCalled, ReplyFailed)
