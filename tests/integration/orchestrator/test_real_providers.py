"""The reply pipeline with OpenAI and Anthropic, their HTTP faked at the transport boundary.

Real PostgreSQL, real RabbitMQ, the real SDKs (request building, SSE parsing, error classes);
only the network is replaced, with bodies shaped like the providers' own.
"""

import json
from typing import Any

from metachat.conversations.events import ConversationHandedOff
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.llm import LLMGateway
from metachat.orchestrator.events import ModelCalled, ReplyFailed, ToolCalled
from metachat.tenants import AssistantDeps
from metachat.tenants.assistant.handlers import set_provider_key
from tests.integration.orchestrator.support import SNIPPET, World
from tests.unit.llm.fakes import (
    FakeAPI,
    anthropic_message_start,
    anthropic_stream,
    openai_chunk,
    openai_error,
    openai_stream,
)
from tests.waiting import eventually

OPENAI_KEY = "sk-proj-test-4f1c9e"
ANTHROPIC_KEY = "sk-ant-test-77aa"
ANSWER = "We are open on Saturday from 10 am to 2 pm [1]. [confidence: high]"


async def _key(world: World, provider: str, key: str) -> None:
    await set_provider_key(
        world.tenant_id,
        provider,  # type: ignore[arg-type]
        key,
        deps=AssistantDeps(store=world.deps.store, box=world.deps.secrets),
        actor=Actor.operator("test"),
        correlation_id=uuid7(),
    )


def _use_http(world: World, api: FakeAPI) -> None:
    world.orchestrator.models.gateway = LLMGateway(http_client=api.client())


def _tool_call_round() -> Any:
    """A streamed tool call whose id and name come first and whose arguments arrive in pieces."""
    call = {"index": 0, "id": "call_Qx1", "type": "function"}
    return openai_stream(
        [
            openai_chunk({"role": "assistant", "content": None, "tool_calls": [
                {**call, "function": {"name": "search_knowledge_base", "arguments": ""}}
            ]}),
            openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"query": "sat'}}]}),
            openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'urday hours"}'}}]}),
            openai_chunk({}, finish_reason="tool_calls"),
            openai_chunk(None, usage=(180, 22)),
        ]
    )  # fmt: skip


def _text_round(text: str) -> Any:
    pieces = [text[i : i + 12] for i in range(0, len(text), 12)]
    return openai_stream(
        [
            openai_chunk({"role": "assistant", "content": ""}),
            *(openai_chunk({"content": piece}) for piece in pieces),
            openai_chunk({}, finish_reason="stop"),
            openai_chunk(None, usage=(240, 30)),
        ]
    )


def _anthropic_text(text: str) -> Any:
    return anthropic_stream(
        [
            anthropic_message_start(input_tokens=200),
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 28}},
            {"type": "message_stop"},
        ]
    )  # fmt: skip


async def _one_reply(world: World, question: str) -> Any:
    conversation = await world.open()
    async with world.running():
        posted = await world.say(conversation, question)
        await world.publish(posted)

        async def replied() -> bool:
            return bool(await world.replies(conversation))

        await eventually(replied)
    (reply,) = await world.replies(conversation)
    return conversation, reply


class TestOpenAI:
    async def test_a_rate_limit_is_retried_and_a_streamed_tool_call_is_run(
        self, world: World
    ) -> None:
        await _key(world, "openai", OPENAI_KEY)
        await world.configure(burst_window_ms=0, primary={"kind": "openai", "model": "gpt-4o"})
        world.use(knowledge=[SNIPPET])
        api = FakeAPI(
            openai_error(429, "Rate limit reached", error_type="requests", headers={"retry-after": "0"}),
            _tool_call_round(),
            _text_round(ANSWER),
        )  # fmt: skip
        _use_http(world, api)
        _, reply = await _one_reply(world, "When are you open on Saturday?")
        assert reply.text.startswith("We are open on Saturday from 10 am to 2 pm")
        assert "[confidence" not in reply.text
        assert len(api.requests) == 3
        assert api.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
        # The second call carries the assistant's tool call, then its result, in that order.
        turns = json.loads(api.requests[2].content)["messages"]
        assert [t["role"] for t in turns[-2:]] == ["assistant", "tool"]
        assert turns[-2]["tool_calls"][0]["id"] == turns[-1]["tool_call_id"] == "call_Qx1"
        assert "10 am to 2 pm" in turns[-1]["content"]
        usage = [r.event for r in await world.usage(reply.message_id)]
        models = [e for e in usage if isinstance(e, ModelCalled)]
        (tool,) = [e for e in usage if isinstance(e, ToolCalled)]
        assert tool.tool == "search_knowledge_base"
        assert tool.arguments == {"query": "saturday hours"}
        assert [(m.provider, m.input_tokens, m.output_tokens) for m in models] == [
            ("openai", 180, 22),
            ("openai", 240, 30),
        ]
        assert all(m.priced and m.cost_micro_usd > 0 for m in models)


class TestFallback:
    async def test_anthropic_answers_when_openai_keeps_failing(self, world: World) -> None:
        await _key(world, "openai", OPENAI_KEY)
        await _key(world, "anthropic", ANTHROPIC_KEY)
        await world.configure(
            burst_window_ms=0,
            max_tool_rounds=0,
            primary={"kind": "openai", "model": "gpt-4o"},
            fallbacks=[{"kind": "anthropic", "model": "claude-sonnet-4-20250514"}],
        )
        world.use(knowledge=[SNIPPET])
        failure = openai_error(500, "The server had an error", error_type="server_error")
        api = FakeAPI(failure, failure, failure, _anthropic_text(ANSWER))
        _use_http(world, api)
        _, reply = await _one_reply(world, "When are you open on Saturday?")
        assert "10 am to 2 pm" in reply.text
        assert str(api.requests[-1].url) == "https://api.anthropic.com/v1/messages"
        sent = api.requests[-1].headers
        assert ANTHROPIC_KEY in (sent.get("x-api-key"), sent.get("authorization", "")[7:])
        assert [m["provider"] for m in reply.metadata["details"]["models"]] == ["anthropic"]


class TestLimits:
    async def test_an_exhausted_budget_hands_off_before_any_call(self, world: World) -> None:
        await _key(world, "openai", OPENAI_KEY)
        await world.configure(
            burst_window_ms=0, monthly_budget_usd=0, primary={"kind": "openai", "model": "gpt-4o"}
        )
        api = FakeAPI()  # any request fails the test
        _use_http(world, api)
        conversation, reply = await _one_reply(world, "When are you open on Saturday?")
        assert api.requests == []
        handed = [r.event for r in await world.events(conversation)][-1]
        assert isinstance(handed, ConversationHandedOff)
        assert handed.details["code"] == "llm_budget_exceeded"
        (failure,) = [r.event for r in await world.usage(reply.message_id)]
        assert isinstance(failure, ReplyFailed)
