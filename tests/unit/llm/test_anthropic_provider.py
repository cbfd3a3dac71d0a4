"""Anthropic provider: the real `anthropic` SDK against a fake HTTP server."""

from typing import Any

import httpx2
import pytest

from metachat.llm.anthropic_provider import AnthropicProvider
from metachat.llm.errors import (
    LLMRateLimitedError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
    LLMUnsupportedError,
)
from metachat.llm.ports import (
    ChatMessage,
    Completion,
    CompletionRequest,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolSpec,
)
from tests.unit.llm.fakes import (
    FakeAPI,
    anthropic_error,
    anthropic_message,
    anthropic_message_start,
    anthropic_sse_text,
    anthropic_stream,
    drain,
    read_timeout,
)

QUESTION = CompletionRequest(
    messages=(
        ChatMessage(role="system", content="You are Acme's assistant."),
        ChatMessage(role="system", content="Answer from the documents."),
        ChatMessage(role="user", content="Opening hours?"),
    )
)
LOOKUP = ToolSpec(
    name="lookup_order",
    description="Find an order",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}},
)


def provider(api: FakeAPI, **kwargs) -> AnthropicProvider:
    return AnthropicProvider(
        model="claude-sonnet-4-20250514", api_key="sk-ant-test", http_client=api.client(), **kwargs
    )


def text_stream_events(*pieces: str, stop_reason: str = "end_turn") -> list[dict[str, Any]]:
    return [
        anthropic_message_start(input_tokens=25),
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in pieces
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
        {"type": "message_stop"},
    ]


class TestCompletion:
    async def test_puts_system_messages_in_system_and_defaults_max_tokens(self):
        api = FakeAPI(anthropic_message([{"type": "text", "text": "We open at 9."}]))
        result = await provider(api).complete(QUESTION)
        assert str(api.requests[0].url) == "https://api.anthropic.com/v1/messages"
        body = api.body()
        assert body["system"] == "You are Acme's assistant.\n\nAnswer from the documents."
        assert body["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "Opening hours?"}]}
        ]
        assert body["max_tokens"] == 1024
        assert result.text == "We open at 9."
        assert (result.usage.input_tokens, result.usage.output_tokens) == (25, 9)
        assert (result.provider, result.model, result.finish_reason) == (
            "anthropic",
            "claude-sonnet-4-20250514",
            "stop",
        )

    async def test_sends_max_tokens_but_no_sampling_parameters_and_max_tokens_is_length(self):
        api = FakeAPI(
            anthropic_message([{"type": "text", "text": "We open"}], stop_reason="max_tokens")
        )
        request = CompletionRequest(messages=QUESTION.messages, temperature=0.2, top_p=0.5)
        result = await provider(api, max_tokens=300).complete(request)
        body = api.body()
        assert body["max_tokens"] == 300
        assert "temperature" not in body  # the pinned API version has no sampling parameters
        assert "top_p" not in body
        assert result.finish_reason == "length"


class TestToolUse:
    async def test_tool_use_blocks_become_tool_calls(self):
        api = FakeAPI(
            anthropic_message(
                [
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A09q90qw90lq917835lq9",
                        "name": "lookup_order",
                        "input": {"order_id": "A-17"},
                    },
                ],
                stop_reason="tool_use",
            )
        )
        result = await provider(api).complete(
            CompletionRequest(messages=QUESTION.messages, tools=(LOOKUP,))
        )
        assert api.body()["tools"] == [
            {
                "name": "lookup_order",
                "description": "Find an order",
                "input_schema": LOOKUP.parameters,
            }
        ]
        assert result.finish_reason == "tool_calls"
        (call,) = result.tool_calls
        assert (call.id, call.name, call.arguments) == (
            "toolu_01A09q90qw90lq917835lq9",
            "lookup_order",
            {"order_id": "A-17"},
        )

    async def test_tool_calls_and_results_are_sent_as_tool_use_then_tool_result_blocks(self):
        api = FakeAPI(anthropic_message([{"type": "text", "text": "Both shipped."}]))
        calls = (
            ToolCall.of(id="toolu_1", name="lookup_order", arguments={"order_id": "A"}),
            ToolCall.of(id="toolu_2", name="lookup_order", arguments={"order_id": "B"}),
        )
        messages = (
            ChatMessage(role="user", content="Where are A and B?"),
            ChatMessage(role="assistant", content="Checking.", tool_calls=calls),
            ChatMessage(role="tool", content="A shipped", tool_call_id="toolu_1"),
            ChatMessage(role="tool", content="B shipped", tool_call_id="toolu_2"),
        )
        await provider(api).complete(CompletionRequest(messages=messages, tools=(LOOKUP,)))
        sent = api.body()["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert sent[1]["content"] == [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "lookup_order",
                "input": {"order_id": "A"},
            },
            {
                "type": "tool_use",
                "id": "toolu_2",
                "name": "lookup_order",
                "input": {"order_id": "B"},
            },
        ]
        assert sent[2]["content"] == [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A shipped"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "B shipped"},
        ]


class TestStreaming:
    async def test_yields_text_deltas_then_the_completion_with_usage_from_both_events(self):
        api = FakeAPI(anthropic_stream(text_stream_events("We open", " at 9.")))
        items = [item async for item in provider(api).stream(QUESTION)]
        assert items[:2] == [TextDelta(text="We open"), TextDelta(text=" at 9.")]
        final = items[-1]
        assert isinstance(final, Completion)
        assert final.text == "We open at 9."
        assert (final.usage.input_tokens, final.usage.output_tokens) == (25, 15)
        assert api.body()["stream"] is True

    async def test_assembles_a_tool_call_from_input_json_deltas_at_its_block_stop(self):
        events = [
            anthropic_message_start(input_tokens=40),
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Checking."},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_9",
                    "name": "lookup_order",
                    "input": {},
                },
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": ""},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"order_'},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 'id": "A-17"}'},
            },
            {"type": "content_block_stop", "index": 1},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 61},
            },
            {"type": "message_stop"},
        ]
        api = FakeAPI(anthropic_stream(events))
        items = [item async for item in provider(api).stream(QUESTION)]
        assert [type(i).__name__ for i in items] == ["TextDelta", "ToolCall", "Completion"]
        call = items[1]
        assert isinstance(call, ToolCall)
        assert (call.id, call.name, call.arguments) == (
            "toolu_9",
            "lookup_order",
            {"order_id": "A-17"},
        )
        final = items[-1]
        assert isinstance(final, Completion)
        assert final.tool_calls == (call,)
        assert final.finish_reason == "tool_calls"
        assert final.usage.output_tokens == 61

    async def test_an_error_event_inside_the_stream_is_a_retryable_server_error(self):
        events = text_stream_events("We")[:4]
        body = anthropic_sse_text(events) + (
            'event: error\ndata: {"type": "error", "error": '
            '{"type": "overloaded_error", "message": "Overloaded"}}\n\n'
        )
        api = FakeAPI(
            httpx2.Response(200, text=body, headers={"content-type": "text/event-stream"})
        )
        items: list[StreamItem] = []
        with pytest.raises(LLMServerError) as caught:
            await drain(provider(api).stream(QUESTION), items)
        assert items == [TextDelta(text="We")]
        assert caught.value.retryable


class TestErrors:
    async def test_429_is_rate_limited_with_retry_after(self):
        api = FakeAPI(
            anthropic_error(
                429, "rate_limit_error", "Number of requests exceeded", {"retry-after": "7"}
            )
        )
        with pytest.raises(LLMRateLimitedError) as caught:
            await provider(api).complete(QUESTION)
        assert caught.value.retry_after == 7.0
        assert len(api.requests) == 1

    async def test_529_overloaded_is_a_retryable_server_error(self):
        api = FakeAPI(anthropic_error(529, "overloaded_error", "Overloaded"))
        with pytest.raises(LLMServerError) as caught:
            await provider(api).complete(QUESTION)
        assert caught.value.retryable
        assert "Overloaded" in caught.value.message

    async def test_400_is_a_request_error(self):
        api = FakeAPI(anthropic_error(400, "invalid_request_error", "max_tokens: too large"))
        with pytest.raises(LLMRequestError) as caught:
            await provider(api).complete(QUESTION)
        assert not caught.value.retryable

    async def test_a_read_timeout_is_a_timeout(self):
        with pytest.raises(LLMTimeoutError):
            await provider(FakeAPI(read_timeout())).complete(QUESTION)


class TestEmbeddings:
    async def test_embed_is_unsupported(self):
        api = FakeAPI()
        with pytest.raises(LLMUnsupportedError):
            await provider(api).embed(["hello"])
        assert api.requests == []
