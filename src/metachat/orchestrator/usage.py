"""Recording what a reply cost: one `ModelCalled` per model call, one `ToolCalled` per tool.

All of one reply's facts start the reply's own stream (`reply-<id>`, expected version 0): one
writer per stream, so no conflict is possible, and a reply that is generated twice (a
redelivery after a crash) is recorded twice, as it was paid twice. They are committed in the
same transaction as the reply's change to the conversation (`conversations.NewStream`), so no
reply is committed without its cost, and no commit of its own waits in the reply's path.
"""

import uuid
from collections.abc import Callable, Sequence

from metachat.conversations import NewStream
from metachat.eventstore.envelope import Event
from metachat.llm.ports import Usage
from metachat.orchestrator.events import ModelCalled, ReplyFailed, ToolCalled
from metachat.orchestrator.pipeline import Generation

Price = Callable[[str, Usage], tuple[int, bool]]
"""(model, usage) → (cost in micro-USD, whether the model is in the price table)."""


def stream_id(reply_id: uuid.UUID) -> str:
    """The stream of one reply's model and tool calls."""
    return f"reply-{reply_id}"


class UsageRecorder:
    """Builds a reply's usage events, priced."""

    def __init__(self, price: Price) -> None:
        self._price = price

    def events(
        self, conversation_id: uuid.UUID, reply_id: uuid.UUID, generation: Generation
    ) -> list[Event]:
        """The usage events of one generation, in the order the calls were made."""
        events: list[Event] = []
        for number, completion in enumerate(generation.completions):
            cost, priced = self._price(completion.model, completion.usage)
            events.append(
                ModelCalled(
                    conversation_id=conversation_id,
                    reply_id=reply_id,
                    round=number,
                    provider=completion.provider,
                    model=completion.model,
                    input_tokens=completion.usage.input_tokens,
                    output_tokens=completion.usage.output_tokens,
                    cost_micro_usd=cost,
                    priced=priced,
                    latency_ms=completion.latency_ms,
                    finish_reason=completion.finish_reason,
                )
            )
        events += [
            ToolCalled(
                conversation_id=conversation_id,
                reply_id=reply_id,
                call_id=result.call.id,
                tool=result.call.name,
                arguments=result.call.arguments,
                result=result.content,
                error=result.error,
                duration_ms=result.duration_ms,
            )
            for result in generation.tool_results
        ]
        return events

    def failure(
        self, conversation_id: uuid.UUID, reply_id: uuid.UUID, code: str, errors: Sequence[str]
    ) -> list[Event]:
        """That no model answered (or was allowed to), and why."""
        return [
            ReplyFailed(
                conversation_id=conversation_id, reply_id=reply_id, reason=code, errors=list(errors)
            )
        ]

    def along(self, reply_id: uuid.UUID, events: list[Event]) -> NewStream | None:
        """The reply's usage events as the stream committed with its change (None: no events)."""
        return NewStream(stream_id=stream_id(reply_id), events=events) if events else None
