"""Putting a streamed chat completion back together: text, tool calls by index, usage.

The earlier system read tool-call deltas from a field the OpenAI provider never filled. Here a
call is assembled from `choices[0].delta.tool_calls[i]`: the first delta of index i carries its
id and name, the following ones pieces of its JSON arguments; the call is complete when the
choice finishes (`finish_reason`), or at the end of the stream for servers that never say.
"""

from typing import Any

from openai.types.chat import ChatCompletionChunk

from metachat.llm.ports import Completion, FinishReason, StreamItem, TextDelta, ToolCall, Usage

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class _ToolCallParts:
    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class OpenAIStreamAssembly:
    """Collects a streamed answer; tool calls are put together from `delta.tool_calls[i]`."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.calls: dict[int, _ToolCallParts] = {}
        self.done: list[ToolCall] = []
        self.usage = Usage()
        self.finish_reason: str | None = None

    def feed(self, chunk: ChatCompletionChunk) -> list[StreamItem]:
        """Take one chunk; return its text delta and any tool calls its finish completes."""
        items: list[StreamItem] = []
        self.model = chunk.model or self.model
        if chunk.usage is not None:  # the last chunk, with `include_usage`, has no choices
            self.usage = Usage(
                input_tokens=chunk.usage.prompt_tokens,
                output_tokens=chunk.usage.completion_tokens,
            )
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if choice.delta.content:
                self.text.append(choice.delta.content)
                items.append(TextDelta(text=choice.delta.content))
            for delta in choice.delta.tool_calls or ():
                self._add(delta)
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
                items.extend(self.pending_calls())
        return items

    def _add(self, delta: Any) -> None:
        # Some compatible servers omit `index` when they send a call whole.
        index = delta.index if isinstance(getattr(delta, "index", None), int) else len(self.calls)
        parts = self.calls.setdefault(index, _ToolCallParts())
        parts.id = parts.id or (delta.id or "")
        if delta.function is not None:
            parts.name = parts.name or (delta.function.name or "")
            parts.arguments.append(delta.function.arguments or "")

    def pending_calls(self) -> list[ToolCall]:
        """The tool calls assembled so far and not yet returned, in index order."""
        ready = [
            ToolCall.parse(
                id=parts.id or f"call_{index}",
                name=parts.name,
                raw_arguments="".join(parts.arguments),
            )
            for index, parts in sorted(self.calls.items())
        ]
        self.calls.clear()
        self.done.extend(ready)
        return ready

    def completion(self, *, provider: str, latency_ms: int) -> Completion:
        """The whole answer, once the stream has ended."""
        return Completion(
            text="".join(self.text),
            tool_calls=tuple(self.done),
            usage=self.usage,
            model=self.model,
            provider=provider,
            finish_reason=finish_reason(self.finish_reason, has_calls=bool(self.done)),
            latency_ms=latency_ms,
        )


def finish_reason(reason: str | None, *, has_calls: bool) -> FinishReason:
    """Our finish reason for OpenAI's."""
    mapped = _FINISH.get(reason or "stop", "other")
    # Ollama and others report `stop` even when the turn ended in tool calls; `length` stays
    # `length` so a call cut short is not mistaken for a complete one.
    return "tool_calls" if has_calls and mapped == "stop" else mapped
