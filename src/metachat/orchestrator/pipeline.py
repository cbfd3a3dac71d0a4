"""One generation: stream the model's answer, run the tools it calls, up to a bound of rounds.

Each round streams; text deltas go to the live listeners as they arrive (tagged with the round,
since a round that ends in tool calls is not the final answer). When the model calls tools,
the assistant turn with its calls and then one `tool` message per result are appended, in that
order, and the model is asked again. The last allowed round offers no tools, so the model must
answer in words.
"""

from collections.abc import Sequence
from typing import Protocol

import msgspec

from metachat.llm.ports import (
    ChatMessage,
    Completion,
    CompletionRequest,
    ContextSnippet,
    LLMProvider,
    TextDelta,
)
from metachat.orchestrator.tools import Toolbox, ToolResult


class LiveSink(Protocol):
    """Where the answer's text goes while it is generated (the conversation's live stream)."""

    async def delta(self, text: str, *, round_number: int) -> None:
        """Send a piece of text."""
        ...

    async def close(self) -> None:
        """The reply is complete: send what is left."""
        ...


class Generation(msgspec.Struct, frozen=True, kw_only=True):
    """What the model produced for one reply: the final text and everything that led to it."""

    text: str
    completions: list[Completion]
    tool_results: list[ToolResult]


class NoCompletionError(RuntimeError):
    """A provider's stream ended without its final completion (a broken provider)."""


async def _one_round(
    provider: LLMProvider, request: CompletionRequest, sink: LiveSink, round_number: int
) -> Completion:
    completion: Completion | None = None
    async for item in provider.stream(request):
        if isinstance(item, TextDelta):
            await sink.delta(item.text, round_number=round_number)
        elif isinstance(item, Completion):
            completion = item
    if completion is None:
        raise NoCompletionError("the model's stream ended without a completion")
    return completion


async def generate(
    provider: LLMProvider,
    messages: Sequence[ChatMessage],
    *,
    toolbox: Toolbox | None,
    max_tool_rounds: int,
    context: Sequence[ContextSnippet],
    sink: LiveSink,
) -> Generation:
    """Run the model until it answers in words (at most `max_tool_rounds` rounds of tools)."""
    turns = list(messages)
    completions: list[Completion] = []
    results: list[ToolResult] = []
    for round_number in range(max_tool_rounds + 1):
        offer = toolbox.specs if toolbox is not None and round_number < max_tool_rounds else ()
        request = CompletionRequest(messages=tuple(turns), tools=offer, context=tuple(context))
        completion = await _one_round(provider, request, sink, round_number)
        completions.append(completion)
        if not completion.tool_calls or toolbox is None or not offer:
            return Generation(text=completion.text, completions=completions, tool_results=results)
        turns.append(
            ChatMessage(role="assistant", content=completion.text, tool_calls=completion.tool_calls)
        )
        for call in completion.tool_calls:
            result = await toolbox.run(call)
            results.append(result)
            turns.append(ChatMessage(role="tool", content=result.content, tool_call_id=call.id))
    raise AssertionError("unreachable: the last round offers no tools")
