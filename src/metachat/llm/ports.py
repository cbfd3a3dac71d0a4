"""What a language model is to the rest of the platform: messages in, a completion out.

Every provider (OpenAI-compatible, Anthropic, offline) and every wrapper (retries, circuit
breaker, fallback chain) speaks this one vocabulary, so the orchestrator never sees an SDK type.
"""

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal, Protocol

import msgspec

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]
"""Why the model stopped, in one vocabulary for every provider (Anthropic's `end_turn` is
`stop`, its `max_tokens` is `length`, its `tool_use` is `tool_calls`)."""
MonotonicClock = Callable[[], float]
"""Seconds from an arbitrary origin that never goes backwards (`time.monotonic`); injected so
tests move time by hand."""


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A function the model may call: its name, what it does, and a JSON schema of its input."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A call the model asked for. `arguments` is the parsed JSON object.

    Models do not always produce valid JSON: then `arguments` is empty and `error` says why, so
    the orchestrator can answer the call with that error instead of crashing. `raw_arguments`
    keeps the text exactly as the model sent it, to echo it back in the conversation.
    """

    id: str
    name: str
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    raw_arguments: str = "{}"
    error: str | None = None

    @classmethod
    def parse(cls, *, id: str, name: str, raw_arguments: str) -> "ToolCall":  # noqa: A002
        """Parse the arguments string a model produced; never raises."""
        text = raw_arguments.strip() or "{}"
        try:
            parsed = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            return cls(id=id, name=name, raw_arguments=raw_arguments, error=f"invalid JSON: {exc}")
        if not isinstance(parsed, dict):
            error = f"arguments must be a JSON object, not {type(parsed).__name__}"
            return cls(id=id, name=name, raw_arguments=raw_arguments, error=error)
        return cls(id=id, name=name, arguments=parsed, raw_arguments=raw_arguments)

    @classmethod
    def of(cls, *, id: str, name: str, arguments: dict[str, Any]) -> "ToolCall":  # noqa: A002
        """A call whose arguments arrived already parsed (Anthropic's `tool_use.input`)."""
        raw = msgspec.json.encode(arguments).decode()
        return cls(id=id, name=name, arguments=arguments, raw_arguments=raw)


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of the conversation sent to the model.

    An assistant turn that called tools carries `tool_calls`, and each result follows as a
    `tool` message with the `tool_call_id` it answers; both are sent, in that order (the earlier
    system dropped the assistant turn, which the APIs reject or misread).
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message carries tool_calls")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("a tool message, and only a tool message, carries tool_call_id")


class ContextSnippet(msgspec.Struct, frozen=True, kw_only=True):
    """A retrieved passage, numbered as the prompt cites it (`[number]`), with its source."""

    number: int
    text: str
    source: str = ""


class CompletionRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request for the next assistant turn.

    `model`, `temperature`, `max_tokens` and `top_p` override the provider's configured values
    when set; leave `model` unset with a fallback chain, whose providers each have their own.
    `context` is for the offline provider, which answers from it; real providers ignore it
    because the prompt already carries the snippets.
    """

    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    context: tuple[ContextSnippet, ...] = ()


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens billed for one call."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input and output together."""
        return self.input_tokens + self.output_tokens


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    """The model's whole answer to one request: text, tool calls, tokens, who answered, how fast.

    `provider` and `model` name the one that actually answered, which in a fallback chain may
    not be the first one configured.
    """

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = msgspec.field(default_factory=Usage)
    model: str
    provider: str
    finish_reason: FinishReason = "stop"
    latency_ms: int = 0


class TextDelta(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of the answer's text, as it was generated."""

    text: str


StreamItem = TextDelta | ToolCall | Completion
"""What a stream yields: text deltas as they come, each tool call once it is complete, and last
of all the `Completion` (whole text, every tool call, usage)."""


class Embedder(Protocol):
    """Turns texts into vectors; the same embedder must serve documents and queries."""

    @property
    def name(self) -> str:
        """The provider's name."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


class LLMProvider(Embedder, Protocol):
    """A language model: complete, stream and embed, with tool calling."""

    async def complete(self, request: CompletionRequest) -> Completion:
        """The whole answer in one response."""
        ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        """The answer as it is generated; the last item is the `Completion`."""
        ...


async def aclose(iterator: AsyncIterator[StreamItem]) -> None:
    """Close a stream early, so its HTTP response is released (async generators have aclose)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def elapsed_ms(started: float) -> int:
    """Milliseconds since `started` (a `time.perf_counter()` reading)."""
    return round((time.perf_counter() - started) * 1000)
