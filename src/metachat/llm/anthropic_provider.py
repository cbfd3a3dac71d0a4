"""Anthropic's Messages API via the `anthropic` SDK: complete and stream, with tool use.

System messages go to the separate `system` field; tool calls become `tool_use` blocks and tool
results `tool_result` blocks in a user turn, and back. Anthropic has no embeddings API, and the
Messages API of the SDK we pin (anthropic 2.x, API version 2026-10-21) has no sampling
parameters: `temperature` and `top_p` are not sent.
The SDK's own retries are off (`max_retries=0`): `resilience.ResilientProvider` owns retries.
"""

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import anthropic
import httpx2
from anthropic.types import (
    ContentBlockParam,
    MessageParam,
    TextBlock,
    ToolParam,
    ToolUseBlock,
)

from metachat.llm.anthropic_stream import FINISH, AnthropicStreamAssembly, input_tokens
from metachat.llm.errors import (
    LLMConnectionError,
    LLMError,
    LLMServerError,
    LLMTimeoutError,
    LLMUnsupportedError,
    error_for_status,
)
from metachat.llm.ports import (
    ChatMessage,
    Completion,
    CompletionRequest,
    StreamItem,
    ToolCall,
    ToolSpec,
    Usage,
    elapsed_ms,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024
"""Anthropic requires `max_tokens` on every request; this is used when nothing sets it."""


class AnthropicProvider:
    """Messages against one Claude model."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        name: str = "anthropic",
        base_url: str | None = None,
        timeout_seconds: float = 30.0,
        max_tokens: int | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        # base_url is always given: the SDK would otherwise read ANTHROPIC_BASE_URL.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or DEFAULT_BASE_URL,
            timeout=timeout_seconds,
            max_retries=0,
            http_client=http_client,
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        """One message."""
        started = time.perf_counter()
        try:
            message = await self._client.messages.create(**self._params(request))
        except anthropic.AnthropicError as exc:
            raise map_anthropic_error(exc, provider=self.name) from exc
        calls = tuple(
            ToolCall.of(id=b.id, name=b.name, arguments=dict(b.input))
            for b in message.content
            if isinstance(b, ToolUseBlock)
        )
        u = message.usage
        return Completion(
            text="".join(b.text for b in message.content if isinstance(b, TextBlock)),
            tool_calls=calls,
            usage=Usage(
                input_tokens=input_tokens(
                    u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens
                ),
                output_tokens=u.output_tokens,
            ),
            model=message.model,
            provider=self.name,
            finish_reason=FINISH.get(message.stop_reason or "end_turn", "other"),
            latency_ms=elapsed_ms(started),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        """Text deltas, each tool call at its `content_block_stop`, then the total."""
        started = time.perf_counter()
        params = self._params(request)
        assembly = AnthropicStreamAssembly(model=params["model"])
        try:
            events = await self._client.messages.create(**params, stream=True)
            async with events:
                async for event in events:
                    for item in assembly.feed(event):
                        yield item
        except anthropic.AnthropicError as exc:
            raise map_anthropic_error(exc, provider=self.name) from exc
        yield assembly.completion(provider=self.name, latency_ms=elapsed_ms(started))

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Anthropic has no embeddings: always raises `LLMUnsupportedError`."""
        raise LLMUnsupportedError(
            f"Anthropic has no embeddings API ({len(texts)} texts asked); use the offline "
            "embedder or an OpenAI-compatible one",
            provider=self.name,
        )

    def _params(self, request: CompletionRequest) -> dict[str, Any]:
        system, messages = to_anthropic_messages(request.messages)
        params: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_tokens or self._max_tokens,
            "messages": messages,
        }
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = [to_anthropic_tool(t) for t in request.tools]
        return params


def to_anthropic_messages(messages: Sequence[ChatMessage]) -> tuple[str, list[MessageParam]]:
    """The `system` text and the alternating user/assistant turns Anthropic expects.

    Tool results become `tool_result` blocks of a user turn; consecutive messages of the same
    side are merged, because the API wants every result of one assistant turn in the next user
    turn and the roles to alternate.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    turns: list[tuple[Literal["user", "assistant"], list[ContentBlockParam]]] = []
    for message in messages:
        if message.role == "system":
            continue
        side: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue  # an empty text block is refused by the API
        if turns and turns[-1][0] == side:
            turns[-1][1].extend(blocks)
        else:
            turns.append((side, blocks))
    return system, [_turn(side, blocks) for side, blocks in turns]


def _turn(side: Literal["user", "assistant"], blocks: list[ContentBlockParam]) -> MessageParam:
    if side == "user":
        return {"role": "user", "content": blocks}
    return {"role": "assistant", "content": blocks}


def _blocks(message: ChatMessage) -> list[ContentBlockParam]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.content,
            }
        ]
    blocks: list[ContentBlockParam] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks.extend(
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
        for c in message.tool_calls
    )
    return blocks


def to_anthropic_tool(tool: ToolSpec) -> ToolParam:
    """A tool with its JSON schema as `input_schema`."""
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def map_anthropic_error(exc: anthropic.AnthropicError, *, provider: str) -> LLMError:
    """The llm error for an `anthropic` SDK exception (timeouts before connection errors)."""
    if isinstance(exc, anthropic.APITimeoutError):
        return LLMTimeoutError("the request timed out", provider=provider)
    if isinstance(exc, anthropic.APIConnectionError):
        return LLMConnectionError(f"could not connect: {exc.message}", provider=provider)
    if isinstance(exc, anthropic.APIStatusError):
        return error_for_status(
            exc.status_code,
            exc.api_message or exc.message,
            provider=provider,
            headers=exc.response.headers,
        )
    if isinstance(exc, anthropic.APIResponseValidationError):
        return LLMServerError("the response does not match the API", provider=provider)
    return LLMError(f"{type(exc).__name__}: {exc}", provider=provider)
