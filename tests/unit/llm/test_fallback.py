"""The fallback chain: the first provider that answers wins; when none does, every reason."""

from collections.abc import AsyncIterator, Sequence

import pytest

from metachat.llm.errors import (
    LLMRateLimitedError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
    LLMUnavailableError,
)
from metachat.llm.fallback import FallbackChain
from metachat.llm.offline import OfflineProvider
from metachat.llm.openai_compatible import OpenAICompatibleProvider
from metachat.llm.ports import (
    ChatMessage,
    Completion,
    CompletionRequest,
    ContextSnippet,
    StreamItem,
    TextDelta,
)
from metachat.llm.resilience import ResiliencePolicy, ResilientProvider
from tests.unit.llm.fakes import (
    FakeAPI,
    FakeClock,
    RecordingSleep,
    ScriptedProvider,
    drain,
    openai_error,
)

QUESTION = CompletionRequest(
    messages=(ChatMessage(role="user", content="What are your opening hours?"),),
    context=(ContextSnippet(number=1, text="Opening hours are 9 to 5."),),
)


def openai_over(api: FakeAPI, *, clock: FakeClock | None = None) -> ResilientProvider:
    inner = OpenAICompatibleProvider(
        name="openai",
        model="gpt-4o",
        base_url="https://api.openai.com/v1",
        api_key="sk-test",
        http_client=api.client(),
    )
    clock = clock or FakeClock()
    return ResilientProvider(
        inner, policy=ResiliencePolicy(max_attempts=1), clock=clock, sleep=RecordingSleep(clock)
    )


class TestFallsBack:
    async def test_moves_to_the_next_provider_when_the_first_fails(self):
        primary = openai_over(FakeAPI(openai_error(500, "boom")))
        secondary = ScriptedProvider("anthropic", "From Claude.")
        result = await FallbackChain([primary, secondary]).complete(QUESTION)
        assert (result.text, result.provider) == ("From Claude.", "anthropic")

    async def test_a_refused_request_moves_on_too(self):
        refused = ScriptedProvider(
            "openai", LLMRequestError("HTTP 400: context", provider="openai")
        )
        result = await FallbackChain([refused, ScriptedProvider("deepseek", "ok")]).complete(
            QUESTION
        )
        assert result.provider == "deepseek"

    async def test_the_first_provider_that_answers_is_the_only_one_called(self):
        first, second = ScriptedProvider("a", "one"), ScriptedProvider("b", "two")
        await FallbackChain([first, second]).complete(QUESTION)
        assert (first.calls, second.calls) == (1, 0)

    async def test_ends_with_the_offline_provider_that_answers_from_context(self):
        primary = openai_over(FakeAPI(openai_error(503, "overloaded")))
        result = await FallbackChain([primary, OfflineProvider()]).complete(QUESTION)
        assert result.provider == "offline"
        assert result.text.endswith("[confidence: high]")

    async def test_an_unexpected_crash_in_a_provider_moves_on(self):
        broken = ScriptedProvider("buggy", RuntimeError("attribute missing"))
        chain = FallbackChain([broken, ScriptedProvider("b", "fine")])
        assert (await chain.complete(QUESTION)).text == "fine"


class TestAllFailed:
    async def test_the_error_lists_every_providers_reason_in_order(self):
        chain = FallbackChain(
            [
                openai_over(
                    FakeAPI(openai_error(429, "Rate limit", headers={"retry-after": "90"}))
                ),
                ScriptedProvider(
                    "anthropic", LLMTimeoutError("no answer within 30s", provider="anthropic")
                ),
                ScriptedProvider("ollama", RuntimeError("boom")),
            ]
        )
        with pytest.raises(LLMUnavailableError) as caught:
            await chain.complete(QUESTION)
        failures = caught.value.failures
        assert [(f.provider, f.code) for f in failures] == [
            ("openai", LLMRateLimitedError.code),
            ("anthropic", LLMTimeoutError.code),
            ("ollama", "llm_error"),
        ]
        assert failures[0].message == "HTTP 429: Rate limit"
        reason = str(caught.value)
        assert "openai: llm_rate_limited" in reason
        assert "anthropic: llm_timeout: no answer within 30s" in reason
        assert caught.value.provider == "chain:openai>anthropic>ollama"

    async def test_an_open_circuit_is_skipped_without_a_request_and_says_so(self):
        clock = FakeClock()
        api = FakeAPI(*(openai_error(500, "boom") for _ in range(5)))
        primary = openai_over(api, clock=clock)
        for _ in range(5):
            with pytest.raises(LLMServerError):
                await primary.complete(QUESTION)
        chain = FallbackChain([primary, ScriptedProvider("b", LLMServerError("x", provider="b"))])
        with pytest.raises(LLMUnavailableError) as caught:
            await chain.complete(QUESTION)
        assert len(api.requests) == 5
        assert [f.code for f in caught.value.failures] == ["llm_circuit_open", "llm_server_error"]

    def test_a_chain_needs_a_provider(self):
        with pytest.raises(ValueError, match="at least one"):
            FallbackChain([])


class _BreaksMidStream:
    name = "flaky"

    async def complete(self, request: CompletionRequest) -> Completion:
        raise NotImplementedError

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        del request
        yield TextDelta(text="We open")
        raise LLMServerError("connection reset", provider=self.name)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise NotImplementedError


class TestStreamingFallback:
    async def test_a_stream_that_fails_before_its_first_item_moves_on(self):
        primary = openai_over(FakeAPI(openai_error(500, "boom")))
        items = [i async for i in FallbackChain([primary, OfflineProvider()]).stream(QUESTION)]
        final = items[-1]
        assert isinstance(final, Completion)
        assert final.provider == "offline"

    async def test_a_stream_that_breaks_after_it_started_ends_the_reply(self):
        backup = ScriptedProvider("backup", "never used")
        items: list[StreamItem] = []
        with pytest.raises(LLMUnavailableError) as caught:
            await drain(FallbackChain([_BreaksMidStream(), backup]).stream(QUESTION), items)
        assert items == [TextDelta(text="We open")]
        assert backup.calls == 0
        assert [f.code for f in caught.value.failures] == [
            "llm_server_error",
            "llm_stream_interrupted",
        ]

    async def test_when_no_stream_starts_every_reason_is_listed(self):
        chain = FallbackChain(
            [
                ScriptedProvider("a", LLMServerError("down", provider="a")),
                ScriptedProvider("b", LLMServerError("down too", provider="b")),
            ]
        )
        with pytest.raises(LLMUnavailableError) as caught:
            _ = [i async for i in chain.stream(QUESTION)]
        assert [f.provider for f in caught.value.failures] == ["a", "b"]


class TestEmbeddings:
    async def test_embeddings_use_the_one_embedder_and_never_fall_back(self):
        embedder = ScriptedProvider("openai-embed", LLMServerError("down", provider="openai"))
        chain = FallbackChain([ScriptedProvider("a", "x")], embedder=embedder)
        with pytest.raises(LLMServerError):
            await chain.embed(["hello"])

    async def test_without_an_embedder_the_offline_one_is_used(self):
        vectors = await FallbackChain([ScriptedProvider("a", "x")]).embed(["hello"])
        assert len(vectors[0]) == 384
