"""The prompt: the tenant's voice, numbered context with sources, and the latest history.

History is cut to the tenant's token budget from the newest message backwards, so the model
always sees the messages it must answer, and as much of what came before as fits. Tokens are
estimated at four characters each (close enough for a budget; the provider bills the truth).
"""

import math
from collections.abc import Sequence

from metachat.conversations import MessageView
from metachat.llm.ports import ChatMessage, ContextSnippet
from metachat.tenants.commands import AssistantSettings

_CHARS_PER_TOKEN = 4
_ROLES = {"customer": "user", "assistant": "assistant", "agent": "assistant"}


def estimate_tokens(text: str) -> int:
    """A cheap upper-bound estimate of a text's tokens."""
    return math.ceil(len(text) / _CHARS_PER_TOKEN) + 1


def system_prompt(
    settings: AssistantSettings,
    *,
    tenant_name: str,
    context: Sequence[ContextSnippet],
    confidence_instructions: str,
) -> str:
    """The system message: who speaks, how, in which language, from which sources."""
    brand = settings.brand_name or tenant_name
    parts = [f"You are the virtual assistant of {brand}. Adopt a {settings.tone} tone."]
    if settings.language == "auto":
        parts.append("Answer in the language the customer writes in.")
    else:
        parts.append(f"Answer in {settings.language}.")
    parts.append(
        "Answer only from the numbered context below and the conversation; cite the numbers "
        "you used like [1]. If the context does not hold the answer, say so plainly and offer "
        "to pass the question to a person."
    )
    if settings.system_prompt:
        parts.append(settings.system_prompt)
    if context:
        numbered = "\n".join(
            f"[{s.number}] {s.text}" + (f" (source: {s.source})" if s.source else "")
            for s in context
        )
        parts.append(f"Context:\n{numbered}")
    else:
        parts.append("Context: none was found for this question.")
    if confidence_instructions:
        parts.append(confidence_instructions)
    return "\n\n".join(parts)


def history_messages(
    messages: Sequence[MessageView], *, budget: int, keep_last: int
) -> list[ChatMessage]:
    """The conversation as chat turns, newest first until the budget is spent, then in order.

    The last `keep_last` messages (those being answered) are always kept, whatever the budget.
    """
    chosen: list[ChatMessage] = []
    spent = 0
    for index, message in enumerate(reversed(messages)):
        cost = estimate_tokens(message.text)
        if index >= keep_last and spent + cost > budget:
            break
        spent += cost
        role = _ROLES[message.sender]
        chosen.append(ChatMessage(role=role, content=message.text))  # type: ignore[arg-type]
    return list(reversed(chosen))


def build_messages(
    settings: AssistantSettings,
    *,
    tenant_name: str,
    history: Sequence[MessageView],
    answering: int,
    context: Sequence[ContextSnippet],
    confidence_instructions: str,
) -> tuple[ChatMessage, ...]:
    """The whole request: the system message, then the history ending with `answering` turns."""
    system = system_prompt(
        settings,
        tenant_name=tenant_name,
        context=context,
        confidence_instructions=confidence_instructions,
    )
    turns = history_messages(history, budget=settings.history_token_budget, keep_last=answering)
    return (ChatMessage(role="system", content=system), *turns)
