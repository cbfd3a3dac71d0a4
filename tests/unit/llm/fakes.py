"""HTTP fakes for OpenAI and Anthropic at the transport boundary, with bodies shaped like theirs.

The SDK clients get `http_client=httpx2.AsyncClient(transport=MockTransport(...))`, so the real
SDK code (request building, SSE parsing, error classes) runs; only the network is replaced.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx2

from metachat.llm.ports import Completion, CompletionRequest, StreamItem, TextDelta

Step = httpx2.Response | Callable[[httpx2.Request], Awaitable[httpx2.Response]]


class FakeAPI:
    """Answers requests with scripted steps, in order, and records every request."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx2.Request] = []

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self._handle))

    async def _handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if not self.steps:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.steps.pop(0)
        if isinstance(step, httpx2.Response):
            return step
        return await step(request)

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)


def read_timeout() -> Step:
    async def step(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    return step


def connect_error() -> Step:
    async def step(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    return step


def slow(response: httpx2.Response, seconds: float) -> Step:
    async def step(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(seconds)
        return response

    return step


def stalling_stream(first: str, *, stall: float) -> httpx2.Response:
    """An event stream that sends `first`, then goes quiet for `stall` seconds."""

    async def body() -> AsyncIterator[bytes]:
        yield first.encode()
        await asyncio.sleep(stall)

    return httpx2.Response(200, content=body(), headers={"content-type": "text/event-stream"})


# ---- OpenAI -------------------------------------------------------------------------------


def openai_completion(
    *,
    content: str | None = "Hello!",
    tool_calls: Sequence[dict[str, Any]] = (),
    finish_reason: str = "stop",
    model: str = "gpt-4o-2024-08-06",
    usage: tuple[int, int] = (12, 5),
) -> httpx2.Response:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return httpx2.Response(
        200,
        json={
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": {
                "prompt_tokens": usage[0],
                "completion_tokens": usage[1],
                "total_tokens": sum(usage),
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fc9f1d7035",
        },
    )


def openai_tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def openai_chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = None,
    model: str = "gpt-4o-2024-08-06",
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": model,
        "system_fingerprint": "fp_fc9f1d7035",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return chunk


def openai_sse_text(chunks: Sequence[dict[str, Any]], *, done: bool = True) -> str:
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    return text + ("data: [DONE]\n\n" if done else "")


def openai_stream(chunks: Sequence[dict[str, Any]]) -> httpx2.Response:
    return httpx2.Response(
        200, text=openai_sse_text(chunks), headers={"content-type": "text/event-stream"}
    )


def openai_error(
    status: int,
    message: str = "error",
    *,
    error_type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    return httpx2.Response(
        status,
        json={"error": {"message": message, "type": error_type, "param": None, "code": None}},
        headers=headers or {},
    )


def openai_embeddings(vectors: Sequence[list[float]], *, reverse: bool = False) -> httpx2.Response:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return httpx2.Response(
        200,
        json={
            "object": "list",
            "data": list(reversed(data)) if reverse else data,
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        },
    )


# ---- Anthropic ----------------------------------------------------------------------------


def anthropic_message(
    content: Sequence[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    usage: tuple[int, int] = (25, 9),
    model: str = "claude-sonnet-4-20250514",
) -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": list(content),
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage[0],
                "output_tokens": usage[1],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        },
    )


def anthropic_sse_text(events: Sequence[dict[str, Any]]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def anthropic_stream(events: Sequence[dict[str, Any]]) -> httpx2.Response:
    return httpx2.Response(
        200, text=anthropic_sse_text(events), headers={"content-type": "text/event-stream"}
    )


def anthropic_message_start(*, input_tokens: int = 25, model: str = "claude-sonnet-4-20250514"):
    return {
        "type": "message_start",
        "message": {
            "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        },
    }


def anthropic_error(
    status: int, error_type: str, message: str = "error", headers: dict[str, str] | None = None
) -> httpx2.Response:
    return httpx2.Response(
        status,
        json={
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
        },
        headers=headers or {},
    )


async def drain(stream: AsyncIterator[StreamItem], into: list[StreamItem]) -> None:
    """Read a stream to its end, keeping what came before an error."""
    async for item in stream:
        into.append(item)  # noqa: PERF401 - a comprehension would lose the items on error


# ---- time and providers -------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """A sleep that returns at once, records each wait and moves the fake clock by it."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


class ScriptedProvider:
    """A provider (our interface, not HTTP) that fails or answers as scripted, call by call."""

    def __init__(self, name: str, *outcomes: Exception | str) -> None:
        self.name = name
        self.outcomes = list(outcomes)
        self.requests: list[CompletionRequest | Sequence[str]] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _next(self, request: CompletionRequest | Sequence[str]) -> str:
        self.requests.append(request)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def complete(self, request: CompletionRequest) -> Completion:
        return Completion(text=self._next(request), model="m", provider=self.name)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        text = self._next(request)
        for word in text.split():
            yield TextDelta(text=word)
        yield Completion(text=text, model="m", provider=self.name)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self._next(texts)
        return [[1.0] for _ in texts]
