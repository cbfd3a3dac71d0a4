"""Retries, timeouts and streams of `ResilientProvider`, over the real SDKs and fake HTTP.

Waits go through an injected sleep that records them and returns at once; the only real
waiting is a timeout of a few hundredths of a second.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from metachat.llm.anthropic_provider import AnthropicProvider
from metachat.llm.errors import (
    LLMRateLimitedError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
)
from metachat.llm.openai_compatible import OpenAICompatibleProvider
from metachat.llm.ports import ChatMessage, Completion, CompletionRequest, StreamItem, TextDelta
from metachat.llm.resilience import ResiliencePolicy, ResilientProvider
from tests.unit.llm.fakes import (
    FakeAPI,
    RecordingSleep,
    anthropic_error,
    anthropic_message,
    drain,
    openai_chunk,
    openai_completion,
    openai_embeddings,
    openai_error,
    openai_sse_text,
    openai_stream,
    read_timeout,
    slow,
    stalling_stream,
)

QUESTION = CompletionRequest(messages=(ChatMessage(role="user", content="Opening hours?"),))


def openai(api: FakeAPI) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        name="openai",
        model="gpt-4o",
        base_url="https://api.openai.com/v1",
        api_key="sk-test",
        http_client=api.client(),
    )


def resilient(
    inner, sleep: RecordingSleep, policy: ResiliencePolicy | None = None
) -> ResilientProvider:
    # jitter=1.0: the full-jitter draw at its top, so the waits are the backoff ceilings.
    return ResilientProvider(inner, policy=policy, sleep=sleep, jitter=lambda: 1.0)


class TestRetryOnRateLimit:
    async def test_a_429_is_retried_after_the_wait_the_provider_asked_for(self):
        api = FakeAPI(
            openai_error(429, "Rate limit reached", headers={"retry-after": "2"}),
            openai_completion(content="We open at 9."),
        )
        sleep = RecordingSleep()
        result = await resilient(openai(api), sleep).complete(QUESTION)
        assert result.text == "We open at 9."
        assert len(api.requests) == 2
        assert sleep.waits == [2.0]

    async def test_anthropic_429_with_retry_after_is_retried_too(self):
        api = FakeAPI(
            anthropic_error(429, "rate_limit_error", headers={"retry-after": "4"}),
            anthropic_message([{"type": "text", "text": "Hello"}]),
        )
        sleep = RecordingSleep()
        inner = AnthropicProvider(model="claude-sonnet-4", api_key="k", http_client=api.client())
        assert (await resilient(inner, sleep).complete(QUESTION)).text == "Hello"
        assert sleep.waits == [4.0]

    async def test_a_wait_longer_than_the_policy_allows_is_not_waited_for(self):
        api = FakeAPI(openai_error(429, "Quota", headers={"retry-after": "120"}))
        sleep = RecordingSleep()
        with pytest.raises(LLMRateLimitedError):
            await resilient(openai(api), sleep).complete(QUESTION)
        assert len(api.requests) == 1
        assert sleep.waits == []  # the chain moves on to the next provider instead


class TestRetryOnServerError:
    async def test_a_500_then_a_success_is_retried_with_backoff(self):
        api = FakeAPI(openai_error(500, "boom", error_type="server_error"), openai_completion())
        sleep = RecordingSleep()
        await resilient(openai(api), sleep).complete(QUESTION)
        assert len(api.requests) == 2
        assert sleep.waits == [0.25]

    async def test_backoff_doubles_up_to_the_cap_and_gives_up_after_the_last_attempt(self):
        api = FakeAPI(*(openai_error(503, "unavailable") for _ in range(5)))
        sleep = RecordingSleep()
        policy = ResiliencePolicy(max_attempts=5, backoff_max_seconds=1.0, failure_threshold=99)
        with pytest.raises(LLMServerError):
            await resilient(openai(api), sleep, policy).complete(QUESTION)
        assert len(api.requests) == 5
        assert sleep.waits == [0.25, 0.5, 1.0, 1.0]

    async def test_jitter_draws_each_wait_below_its_ceiling(self):
        api = FakeAPI(openai_error(500, "boom"), openai_completion())
        sleep = RecordingSleep()
        provider = ResilientProvider(openai(api), sleep=sleep, jitter=lambda: 0.5)
        await provider.complete(QUESTION)
        assert sleep.waits == [0.125]


class TestRetryOnTimeout:
    async def test_an_sdk_read_timeout_is_retried(self):
        api = FakeAPI(read_timeout(), openai_completion(content="late but here"))
        sleep = RecordingSleep()
        assert (await resilient(openai(api), sleep).complete(QUESTION)).text == "late but here"
        assert len(api.requests) == 2

    async def test_a_server_slower_than_the_call_timeout_is_cut_off_and_retried(self):
        api = FakeAPI(slow(openai_completion(), 5.0), openai_completion(content="fast"))
        policy = ResiliencePolicy(timeout_seconds=0.05)
        result = await resilient(openai(api), RecordingSleep(), policy).complete(QUESTION)
        assert result.text == "fast"

    async def test_when_every_attempt_times_out_the_error_says_so(self):
        api = FakeAPI(slow(openai_completion(), 5.0))
        policy = ResiliencePolicy(timeout_seconds=0.02, max_attempts=1)
        with pytest.raises(LLMTimeoutError) as caught:
            await resilient(openai(api), RecordingSleep(), policy).complete(QUESTION)
        assert caught.value.message == "no answer within 0.02s"


class TestNoRetryOnRequestError:
    async def test_a_400_is_raised_at_once(self):
        api = FakeAPI(openai_error(400, "Unsupported parameter"))
        sleep = RecordingSleep()
        with pytest.raises(LLMRequestError):
            await resilient(openai(api), sleep).complete(QUESTION)
        assert len(api.requests) == 1
        assert sleep.waits == []


class _BreaksAfterFirstItem:
    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: CompletionRequest) -> Completion:
        raise NotImplementedError

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        del request
        self.calls += 1
        yield TextDelta(text="We open")
        raise LLMServerError("connection reset", provider=self.name)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise NotImplementedError


class TestStreams:
    async def test_a_stream_refused_before_its_first_item_is_retried(self):
        chunks = [openai_chunk({"content": "Hi"}), openai_chunk(None, usage=(3, 1))]
        api = FakeAPI(openai_error(502, "bad gateway"), openai_stream(chunks))
        sleep = RecordingSleep()
        items = [item async for item in resilient(openai(api), sleep).stream(QUESTION)]
        assert items[0] == TextDelta(text="Hi")
        assert isinstance(items[-1], Completion)
        assert len(api.requests) == 2

    async def test_a_stream_that_fails_after_yielding_is_not_retried(self):
        inner = _BreaksAfterFirstItem()
        items: list[StreamItem] = []
        with pytest.raises(LLMServerError):
            await drain(resilient(inner, RecordingSleep()).stream(QUESTION), items)
        assert items == [TextDelta(text="We open")]
        assert inner.calls == 1  # the customer has seen "We open": a retry would repeat it

    async def test_a_stream_that_goes_quiet_is_cut_off_by_the_idle_timeout(self):
        first = openai_sse_text([openai_chunk({"content": "We"})], done=False)
        api = FakeAPI(stalling_stream(first, stall=5.0))
        policy = ResiliencePolicy(stream_idle_timeout_seconds=0.05)
        items: list[StreamItem] = []
        with pytest.raises(LLMTimeoutError) as caught:
            await drain(resilient(openai(api), RecordingSleep(), policy).stream(QUESTION), items)
        assert items == [TextDelta(text="We")]
        assert "stalled" in caught.value.message

    async def test_a_stream_whose_first_item_is_late_is_retried(self):
        chunks = [openai_chunk({"content": "Hi"}), openai_chunk(None, usage=(3, 1))]
        api = FakeAPI(slow(openai_stream(chunks), 5.0), openai_stream(chunks))
        policy = ResiliencePolicy(timeout_seconds=0.05)
        items = [i async for i in resilient(openai(api), RecordingSleep(), policy).stream(QUESTION)]
        assert isinstance(items[-1], Completion)
        assert len(api.requests) == 2

    async def test_a_reader_may_stop_reading_early(self):
        chunks = [openai_chunk({"content": w}) for w in ("a", "b", "c")]
        api = FakeAPI(openai_stream(chunks))
        stream = resilient(openai(api), RecordingSleep()).stream(QUESTION)
        first = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        assert first == TextDelta(text="a")


class TestEmbeddings:
    async def test_embeddings_are_retried_like_completions(self):
        api = FakeAPI(openai_error(500, "boom"), openai_embeddings([[1.0, 0.0]]))
        vectors = await resilient(openai(api), RecordingSleep()).embed(["hi"])
        assert vectors == [[1.0, 0.0]]


class TestCancellation:
    async def test_a_cancelled_call_is_not_counted_against_the_provider(self):
        api = FakeAPI(slow(openai_completion(), 5.0))
        provider = resilient(openai(api), RecordingSleep())
        task = asyncio.create_task(provider.complete(QUESTION))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert provider.breaker.state == "closed"
