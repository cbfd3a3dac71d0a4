"""OpenAI-compatible provider: the real `openai` SDK against a fake HTTP server."""

import pytest

from metachat.llm.errors import (
    LLMConnectionError,
    LLMRateLimitedError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
)
from metachat.llm.openai_compatible import PRESETS, OpenAICompatibleProvider
from metachat.llm.ports import (
    ChatMessage,
    Completion,
    CompletionRequest,
    TextDelta,
    ToolCall,
    ToolSpec,
)
from tests.unit.llm.fakes import (
    FakeAPI,
    connect_error,
    openai_chunk,
    openai_completion,
    openai_embeddings,
    openai_error,
    openai_stream,
    openai_tool_call,
    read_timeout,
)

QUESTION = CompletionRequest(messages=(ChatMessage(role="user", content="Opening hours?"),))
WEATHER = ToolSpec(
    name="get_weather",
    description="Weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def provider(api: FakeAPI, kind: str = "openai", **kwargs) -> OpenAICompatibleProvider:
    preset = PRESETS[kind]  # type: ignore[index]
    return OpenAICompatibleProvider(
        name=kind,
        model=kwargs.pop("model", "gpt-4o"),
        base_url=preset.base_url or "http://llm.test/v1",
        api_key=kwargs.pop("api_key", "sk-test"),
        max_tokens_field=preset.max_tokens_field,
        http_client=api.client(),
        **kwargs,
    )


class TestCompletion:
    async def test_returns_the_text_usage_and_who_answered(self):
        api = FakeAPI(openai_completion(content="We open at 9.", usage=(12, 5)))
        result = await provider(api).complete(QUESTION)
        assert result.text == "We open at 9."
        assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 5)
        assert result.provider == "openai"
        assert result.model == "gpt-4o-2024-08-06"
        assert result.finish_reason == "stop"

    async def test_sends_the_model_messages_and_configured_parameters(self):
        api = FakeAPI(openai_completion())
        await provider(api, temperature=0.3, max_tokens=600).complete(QUESTION)
        request = api.requests[0]
        assert str(request.url) == "https://api.openai.com/v1/chat/completions"
        assert request.headers["authorization"] == "Bearer sk-test"
        body = api.body()
        assert body["model"] == "gpt-4o"
        assert body["messages"] == [{"role": "user", "content": "Opening hours?"}]
        assert body["temperature"] == 0.3
        assert body["max_completion_tokens"] == 600  # OpenAI's reasoning models refuse max_tokens
        assert "stream" not in body

    async def test_request_values_override_the_configured_ones_and_unset_ones_are_not_sent(self):
        api = FakeAPI(openai_completion())
        request = CompletionRequest(
            messages=QUESTION.messages, model="gpt-4o-mini", max_tokens=50, top_p=0.9
        )
        await provider(api, max_tokens=600).complete(request)
        body = api.body()
        assert (body["model"], body["max_completion_tokens"], body["top_p"]) == (
            "gpt-4o-mini",
            50,
            0.9,
        )
        assert "temperature" not in body

    async def test_compatible_servers_get_max_tokens_at_their_base_url_without_a_key(self):
        api = FakeAPI(openai_completion(model="llama3.1:8b"))
        await provider(api, "ollama", model="llama3.1:8b", api_key=None, max_tokens=100).complete(
            QUESTION
        )
        assert str(api.requests[0].url) == "http://localhost:11434/v1/chat/completions"
        assert api.body()["max_tokens"] == 100
        assert api.requests[0].headers["authorization"] == "Bearer no-key"


class TestToolCalling:
    async def test_sends_tools_and_the_assistant_tool_calls_turn_before_its_results(self):
        api = FakeAPI(openai_completion(content="Sunny in Paris."))
        call = ToolCall.parse(id="call_1", name="get_weather", raw_arguments='{"city":"Paris"}')
        messages = (
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="user", content="Weather in Paris?"),
            ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(role="tool", content='{"sky":"clear"}', tool_call_id="call_1"),
        )
        await provider(api).complete(CompletionRequest(messages=messages, tools=(WEATHER,)))
        body = api.body()
        assert body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parameters": WEATHER.parameters,
                },
            }
        ]
        assert body["messages"][2] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [openai_tool_call("call_1", "get_weather", '{"city":"Paris"}')],
        }
        assert body["messages"][3] == {
            "role": "tool",
            "content": '{"sky":"clear"}',
            "tool_call_id": "call_1",
        }

    async def test_parses_the_tool_calls_of_the_answer(self):
        api = FakeAPI(
            openai_completion(
                content=None,
                finish_reason="tool_calls",
                tool_calls=[openai_tool_call("call_9", "get_weather", '{"city": "Oslo"}')],
            )
        )
        result = await provider(api).complete(QUESTION)
        assert result.finish_reason == "tool_calls"
        assert result.text == ""
        assert result.tool_calls == (
            ToolCall(
                id="call_9",
                name="get_weather",
                arguments={"city": "Oslo"},
                raw_arguments='{"city": "Oslo"}',
            ),
        )

    async def test_malformed_arguments_are_an_error_value_not_a_crash(self):
        api = FakeAPI(
            openai_completion(
                tool_calls=[openai_tool_call("call_2", "get_weather", '{"city": "Os')],
                finish_reason="tool_calls",
            )
        )
        (call,) = (await provider(api).complete(QUESTION)).tool_calls
        assert call.arguments == {}
        assert call.error is not None
        assert call.error.startswith("invalid JSON")
        assert call.raw_arguments == '{"city": "Os'


class TestStreaming:
    async def test_yields_text_deltas_as_they_come_then_the_completion_with_usage(self):
        api = FakeAPI(
            openai_stream(
                [
                    openai_chunk({"role": "assistant", "content": ""}),
                    openai_chunk({"content": "We open"}),
                    openai_chunk({"content": " at 9."}),
                    openai_chunk({}, finish_reason="stop"),
                    openai_chunk(None, usage=(30, 4)),
                ]
            )
        )
        items = [item async for item in provider(api).stream(QUESTION)]
        assert items[:2] == [TextDelta(text="We open"), TextDelta(text=" at 9.")]
        final = items[-1]
        assert isinstance(final, Completion)
        assert final.text == "We open at 9."
        assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 4)
        body = api.body()
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}

    async def test_assembles_tool_calls_from_deltas_split_across_chunks(self):
        first = {"index": 0, "id": "call_a", "type": "function"}
        second = {"index": 1, "id": "call_b", "type": "function"}
        api = FakeAPI(
            openai_stream(
                [
                    openai_chunk({"role": "assistant", "content": None}),
                    openai_chunk(
                        {
                            "tool_calls": [
                                first | {"function": {"name": "get_weather", "arguments": ""}}
                            ]
                        }
                    ),
                    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
                    openai_chunk(
                        {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}
                    ),
                    openai_chunk(
                        {
                            "tool_calls": [
                                second | {"function": {"name": "get_time", "arguments": ""}}
                            ]
                        }
                    ),
                    openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                    openai_chunk({}, finish_reason="tool_calls"),
                    openai_chunk(None, usage=(40, 18)),
                ]
            )
        )
        items = [item async for item in provider(api).stream(QUESTION)]
        calls = [item for item in items if isinstance(item, ToolCall)]
        assert [(c.id, c.name, c.arguments) for c in calls] == [
            ("call_a", "get_weather", {"city": "Paris"}),
            ("call_b", "get_time", {}),
        ]
        final = items[-1]
        assert isinstance(final, Completion)
        assert final.tool_calls == tuple(calls)
        assert final.finish_reason == "tool_calls"
        assert final.usage.output_tokens == 18

    async def test_a_server_that_never_finishes_the_choice_still_gets_its_calls(self):
        api = FakeAPI(
            openai_stream(
                [
                    openai_chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "c1",
                                    "function": {"name": "f", "arguments": "{}"},
                                }
                            ]
                        }
                    ),
                ]
            )
        )
        items = [item async for item in provider(api, "vllm").stream(QUESTION)]
        assert [type(i).__name__ for i in items] == ["ToolCall", "Completion"]


class TestEmbeddings:
    async def test_returns_vectors_in_input_order_asking_for_floats(self):
        api = FakeAPI(openai_embeddings([[0.1, 0.2], [0.3, 0.4]], reverse=True))
        vectors = await provider(api, model="text-embedding-3-small").embed(["a", "b"])
        assert vectors == [[0.1, 0.2], [0.3, 0.4]]
        assert api.body() == {
            "model": "text-embedding-3-small",
            "input": ["a", "b"],
            "encoding_format": "float",
        }

    async def test_no_texts_make_no_request(self):
        assert await provider(FakeAPI()).embed([]) == []


class TestErrors:
    async def test_429_is_rate_limited_with_the_retry_after_ms_header(self):
        api = FakeAPI(
            openai_error(
                429,
                "Rate limit reached",
                error_type="requests",
                headers={"retry-after-ms": "1500", "retry-after": "2"},
            )
        )
        with pytest.raises(LLMRateLimitedError) as caught:
            await provider(api).complete(QUESTION)
        assert caught.value.retryable
        assert caught.value.retry_after == 1.5
        assert caught.value.status == 429
        assert len(api.requests) == 1  # the SDK's own retries are off

    async def test_500_is_a_retryable_server_error(self):
        api = FakeAPI(openai_error(500, "The server had an error", error_type="server_error"))
        with pytest.raises(LLMServerError) as caught:
            await provider(api).complete(QUESTION)
        assert caught.value.retryable

    async def test_400_is_a_request_error_that_is_not_retried(self):
        api = FakeAPI(openai_error(400, "Invalid 'messages': empty array"))
        with pytest.raises(LLMRequestError) as caught:
            await provider(api).complete(QUESTION)
        assert not caught.value.retryable
        assert "Invalid 'messages'" in caught.value.message

    async def test_a_read_timeout_is_a_timeout(self):
        with pytest.raises(LLMTimeoutError):
            await provider(FakeAPI(read_timeout())).complete(QUESTION)

    async def test_a_refused_connection_is_a_connection_error(self):
        with pytest.raises(LLMConnectionError):
            await provider(FakeAPI(connect_error())).complete(QUESTION)

    async def test_a_streaming_request_refused_with_429_raises_before_any_item(self):
        api = FakeAPI(openai_error(429, "slow down", headers={"retry-after": "3"}))
        with pytest.raises(LLMRateLimitedError) as caught:
            _ = [item async for item in provider(api).stream(QUESTION)]
        assert caught.value.retry_after == 3.0
