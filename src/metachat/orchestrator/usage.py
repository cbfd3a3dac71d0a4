"""Recording what a reply cost: one `ModelCalled` per model call, one `ToolCalled` per tool.

All of one reply's facts are appended together to the reply's own stream (`reply-<id>`,
expected version 0): one writer per stream, so no conflict is possible, and a reply that is
generated twice (a redelivery after a crash) is recorded twice, as it was paid twice.
"""

import uuid
from collections.abc import Callable, Sequence

from metachat.conversations import Context
from metachat.eventstore.envelope import Event
from metachat.eventstore.postgres import PostgresEventStore
from metachat.llm.ports import Usage
from metachat.orchestrator.events import ModelCalled, ReplyFailed, ToolCalled
from metachat.orchestrator.pipeline import Generation

Price = Callable[[str, Usage], tuple[int, bool]]
"""(model, usage) → (cost in micro-USD, whether the model is in the price table)."""


def stream_id(reply_id: uuid.UUID) -> str:
    """The stream of one reply's model and tool calls."""
    return f"reply-{reply_id}"


class UsageRecorder:
    """Appends a reply's usage events."""

    def __init__(self, store: PostgresEventStore, price: Price) -> None:
        self._store = store
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

    async def record(
        self, ctx: Context, conversation_id: uuid.UUID, reply_id: uuid.UUID, generation: Generation
    ) -> None:
        """Append the usage of one generation."""
        await self._append(ctx, reply_id, self.events(conversation_id, reply_id, generation))

    async def failed(
        self,
        ctx: Context,
        conversation_id: uuid.UUID,
        reply_id: uuid.UUID,
        code: str,
        errors: Sequence[str],
    ) -> None:
        """Record that no model answered (or was allowed to), and why."""
        failure = ReplyFailed(
            conversation_id=conversation_id, reply_id=reply_id, reason=code, errors=list(errors)
        )
        await self._append(ctx, reply_id, [failure])

    async def _append(self, ctx: Context, reply_id: uuid.UUID, events: list[Event]) -> None:
        if events:
            await self._store.append(
                stream_id(reply_id), events, expected_version=0, metadata=ctx.metadata
            )
