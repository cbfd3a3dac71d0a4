"""OpenAI and every server that speaks its API (DeepSeek, Ollama, vLLM, llama.cpp), via `openai`.

The servers differ only in base URL and whether a key is needed (`PRESETS`). The SDK's own
retries are off (`max_retries=0`): `resilience.ResilientProvider` owns retries, so a call is
never retried twice over.
"""

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import httpx2
import msgspec
import openai
import structlog
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from metachat.llm.errors import (
    LLMConnectionError,
    LLMError,
    LLMServerError,
    LLMTimeoutError,
    error_for_status,
)
from metachat.llm.openai_stream import OpenAIStreamAssembly, finish_reason
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

log = structlog.get_logger()

OpenAIKind = Literal["openai", "deepseek", "ollama", "vllm", "llamacpp", "openai_compatible"]
KEYLESS_PLACEHOLDER = "no-key"
"""Sent as the bearer token to local servers that need none (the SDK insists on one)."""


class Preset(msgspec.Struct, frozen=True, kw_only=True):
    """Where an OpenAI-compatible server usually listens and what it needs."""

    base_url: str | None
    requires_key: bool
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"


PRESETS: dict[OpenAIKind, Preset] = {
    # OpenAI's reasoning models refuse `max_tokens`; `max_completion_tokens` works for all.
    "openai": Preset(
        base_url="https://api.openai.com/v1",
        requires_key=True,
        max_tokens_field="max_completion_tokens",
    ),
    "deepseek": Preset(base_url="https://api.deepseek.com/v1", requires_key=True),
    "ollama": Preset(base_url="http://localhost:11434/v1", requires_key=False),
    "vllm": Preset(base_url="http://localhost:8000/v1", requires_key=False),
    "llamacpp": Preset(base_url="http://localhost:8080/v1", requires_key=False),
    "openai_compatible": Preset(base_url=None, requires_key=False),
}


class OpenAICompatibleProvider:
    """Chat completions, streaming and embeddings against one model of one server."""

    def __init__(
        self,
        *,
        name: str,
        model: str,
        base_url: str,
        api_key: str | None = None,
        timeout_seconds: float = 30.0,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._defaults = {"temperature": temperature, "top_p": top_p}
        self._max_tokens = max_tokens
        self._max_tokens_field = max_tokens_field
        self._client = openai.AsyncOpenAI(
            api_key=api_key or KEYLESS_PLACEHOLDER,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=0,
            http_client=http_client,
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        """One chat completion."""
        started = time.perf_counter()
        try:
            response = await self._client.chat.completions.create(**self._params(request))
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, provider=self.name) from exc
        if not response.choices:
            raise LLMServerError("the response has no choices", provider=self.name)
        choice = response.choices[0]
        calls = tuple(
            ToolCall.parse(id=c.id, name=c.function.name, raw_arguments=c.function.arguments)
            for c in choice.message.tool_calls or ()
            if isinstance(c, ChatCompletionMessageFunctionToolCall)
        )
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            tool_calls=calls,
            usage=Usage(
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            ),
            model=response.model or self.model,
            provider=self.name,
            finish_reason=finish_reason(choice.finish_reason, has_calls=bool(calls)),
            latency_ms=elapsed_ms(started),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        """Text deltas as they arrive, tool calls assembled from their deltas, then the total."""
        started = time.perf_counter()
        params = self._params(request)
        assembly = OpenAIStreamAssembly(model=params["model"])
        try:
            chunks = await self._client.chat.completions.create(
                **params, stream=True, stream_options={"include_usage": True}
            )
            async with chunks:
                async for chunk in chunks:
                    for item in assembly.feed(chunk):
                        yield item
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, provider=self.name) from exc
        for call in assembly.pending_calls():
            yield call
        yield assembly.completion(provider=self.name, latency_ms=elapsed_ms(started))

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text from the embeddings endpoint, in input order."""
        if not texts:
            return []
        try:
            # "float", not the SDK's base64 default: local servers often support only floats.
            response = await self._client.embeddings.create(
                model=self.model, input=list(texts), encoding_format="float"
            )
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, provider=self.name) from exc
        return [list(d.embedding) for d in sorted(response.data, key=lambda d: d.index)]

    def _params(self, request: CompletionRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [to_openai_message(m) for m in request.messages],
        }
        if request.tools:
            params["tools"] = [to_openai_tool(t) for t in request.tools]
        overrides = {"temperature": request.temperature, "top_p": request.top_p}
        for key, default in self._defaults.items():
            value = overrides[key] if overrides[key] is not None else default
            if value is not None:
                params[key] = value
        max_tokens = request.max_tokens or self._max_tokens
        if max_tokens is not None:
            params[self._max_tokens_field] = max_tokens
        return params


def to_openai_message(message: ChatMessage) -> ChatCompletionMessageParam:
    """Our message as the Chat Completions API wants it (assistant tool_calls included)."""
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "user":
        return {"role": "user", "content": message.content}
    if message.role == "tool":
        call_id = message.tool_call_id or ""
        return {"role": "tool", "content": message.content, "tool_call_id": call_id}
    param: ChatCompletionAssistantMessageParam = {
        "role": "assistant",
        "content": message.content or None,
    }
    if message.tool_calls:
        param["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.raw_arguments},
            }
            for c in message.tool_calls
        ]
    return param


def to_openai_tool(tool: ToolSpec) -> ChatCompletionToolParam:
    """A tool as a function definition."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def map_openai_error(exc: openai.OpenAIError, *, provider: str) -> LLMError:
    """The llm error for an `openai` SDK exception (timeouts before connection errors)."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeoutError("the request timed out", provider=provider)
    if isinstance(exc, openai.APIConnectionError):
        return LLMConnectionError(f"could not connect: {exc.message}", provider=provider)
    if isinstance(exc, openai.APIStatusError):
        # The SDK hands over the body's `error` object; its message is the provider's own words.
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body.get("message"), str) else exc.message
        return error_for_status(
            exc.status_code, str(message), provider=provider, headers=exc.response.headers
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return LLMServerError("the response does not match the API", provider=provider)
    return LLMError(f"{type(exc).__name__}: {exc}", provider=provider)
