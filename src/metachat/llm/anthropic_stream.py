"""Putting Anthropic's event stream back together: text, tool calls, usage.

Events: `message_start` (input tokens), `content_block_start` (a text block, or a `tool_use`
block with the call's id and name), `content_block_delta` (`text_delta`, or an
`input_json_delta` with a piece of the call's JSON input), `content_block_stop` (the call is
complete), `message_delta` (stop reason, cumulative output tokens), `message_stop`.
"""

from anthropic.types import (
    InputJSONDelta,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStreamEvent,
    TextBlock,
    ToolUseBlock,
)
from anthropic.types import TextDelta as AnthropicTextDelta

from metachat.llm.ports import Completion, FinishReason, StreamItem, TextDelta, ToolCall, Usage

FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class _ToolUse:
    def __init__(self, *, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.json: list[str] = []


class AnthropicStreamAssembly:
    """Collects the event stream: usage from message_start/message_delta, tool input by index."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.open_calls: dict[int, _ToolUse] = {}
        self.calls: list[ToolCall] = []
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop_reason: str | None = None

    def feed(self, event: RawMessageStreamEvent) -> list[StreamItem]:
        """Take one event; return what it completes (text deltas, a finished tool call)."""
        if isinstance(event, RawMessageStartEvent):
            u = event.message.usage
            self.model = event.message.model or self.model
            self.input_tokens = input_tokens(
                u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens
            )
            self.output_tokens = u.output_tokens
        elif isinstance(event, RawContentBlockStartEvent):
            return self._start(event)
        elif isinstance(event, RawContentBlockDeltaEvent):
            return self._delta(event)
        elif isinstance(event, RawContentBlockStopEvent):
            return self._stop(event)
        elif isinstance(event, RawMessageDeltaEvent):
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            # message_delta's usage is cumulative: it replaces, never adds.
            self.output_tokens = event.usage.output_tokens
            self.input_tokens = event.usage.input_tokens or self.input_tokens
        return []

    def _start(self, event: RawContentBlockStartEvent) -> list[StreamItem]:
        block = event.content_block
        if isinstance(block, ToolUseBlock):
            self.open_calls[event.index] = _ToolUse(call_id=block.id, name=block.name)
        elif isinstance(block, TextBlock) and block.text:
            return self._text(block.text)
        return []

    def _delta(self, event: RawContentBlockDeltaEvent) -> list[StreamItem]:
        delta = event.delta
        if isinstance(delta, AnthropicTextDelta):
            return self._text(delta.text)
        if isinstance(delta, InputJSONDelta) and event.index in self.open_calls:
            self.open_calls[event.index].json.append(delta.partial_json)
        return []

    def _stop(self, event: RawContentBlockStopEvent) -> list[StreamItem]:
        use = self.open_calls.pop(event.index, None)
        if use is None:
            return []
        call = ToolCall.parse(id=use.id, name=use.name, raw_arguments="".join(use.json))
        self.calls.append(call)
        return [call]

    def _text(self, text: str) -> list[StreamItem]:
        self.text.append(text)
        return [TextDelta(text=text)]

    def completion(self, *, provider: str, latency_ms: int) -> Completion:
        """The whole answer, once the stream has ended."""
        return Completion(
            text="".join(self.text),
            tool_calls=tuple(self.calls),
            usage=Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens),
            model=self.model,
            provider=provider,
            finish_reason=FINISH.get(self.stop_reason or "end_turn", "other"),
            latency_ms=latency_ms,
        )


def input_tokens(base: int, cache_written: int | None, cache_read: int | None) -> int:
    """Every prompt token sent, cached ones included."""
    # Anthropic reports cached prompt tokens apart from `input_tokens`; all of them were sent.
    return base + (cache_written or 0) + (cache_read or 0)
