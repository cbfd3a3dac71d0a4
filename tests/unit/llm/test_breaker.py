"""The circuit breaker, through `ResilientProvider`, on an injected clock."""

import pytest

from metachat.llm.breaker import CircuitBreaker
from metachat.llm.errors import LLMRequestError, LLMServerError, LLMUnavailableError
from metachat.llm.ports import ChatMessage, CompletionRequest
from metachat.llm.resilience import ResiliencePolicy, ResilientProvider
from tests.unit.llm.fakes import FakeClock, RecordingSleep, ScriptedProvider

QUESTION = CompletionRequest(messages=(ChatMessage(role="user", content="hi"),))
DOWN = LLMServerError("HTTP 503: unavailable", provider="openai")
ONE_ATTEMPT = ResiliencePolicy(max_attempts=1)  # each call is one attempt: failures count 1:1


def guarded(inner: ScriptedProvider, clock: FakeClock) -> ResilientProvider:
    return ResilientProvider(inner, policy=ONE_ATTEMPT, clock=clock, sleep=RecordingSleep(clock))


def state(breaker: CircuitBreaker) -> str:
    # A call, so mypy does not narrow the state across the assertions of one test.
    return breaker.state


async def fail_times(provider: ResilientProvider, times: int) -> None:
    for _ in range(times):
        with pytest.raises(LLMServerError):
            await provider.complete(QUESTION)


class TestCircuitOpens:
    async def test_opens_after_five_consecutive_failures_and_then_fails_fast(self):
        inner = ScriptedProvider("openai", DOWN)
        provider = guarded(inner, FakeClock())
        await fail_times(provider, 4)
        assert state(provider.breaker) == "closed"
        await fail_times(provider, 1)
        assert state(provider.breaker) == "open"
        with pytest.raises(LLMUnavailableError) as caught:
            await provider.complete(QUESTION)
        assert inner.calls == 5  # the sixth call never reached the provider
        (failure,) = caught.value.failures
        assert (failure.provider, failure.code) == ("openai", "llm_circuit_open")
        assert "next trial in 15.0s" in failure.message

    async def test_a_success_in_between_resets_the_count(self):
        inner = ScriptedProvider("openai", DOWN, DOWN, DOWN, DOWN, "ok", DOWN, DOWN, DOWN, DOWN)
        provider = guarded(inner, FakeClock())
        await fail_times(provider, 4)
        await provider.complete(QUESTION)
        await fail_times(provider, 4)
        assert state(provider.breaker) == "closed"

    async def test_refused_requests_do_not_open_it(self):
        bad = LLMRequestError("HTTP 400: bad", provider="openai")
        provider = guarded(ScriptedProvider("openai", bad), FakeClock())
        for _ in range(10):
            with pytest.raises(LLMRequestError):
                await provider.complete(QUESTION)
        assert state(provider.breaker) == "closed"

    async def test_retries_count_as_failures_and_stop_once_it_opens(self):
        clock = FakeClock()
        inner = ScriptedProvider("openai", DOWN)
        provider = ResilientProvider(
            inner,
            policy=ResiliencePolicy(max_attempts=3),
            clock=clock,
            sleep=RecordingSleep(clock),
        )
        with pytest.raises(LLMServerError):
            await provider.complete(QUESTION)  # attempts 1-3
        with pytest.raises(LLMUnavailableError):
            await provider.complete(QUESTION)  # attempts 4-5, then open: no sixth attempt
        assert inner.calls == 5


class TestCircuitHalfOpens:
    async def test_after_the_cooldown_a_trial_call_goes_through_and_success_closes_it(self):
        clock = FakeClock()
        inner = ScriptedProvider("openai", DOWN, DOWN, DOWN, DOWN, DOWN, "back")
        provider = guarded(inner, clock)
        await fail_times(provider, 5)
        clock.advance(14.9)
        assert state(provider.breaker) == "open"
        clock.advance(0.1)
        assert state(provider.breaker) == "half_open"
        assert (await provider.complete(QUESTION)).text == "back"
        assert state(provider.breaker) == "closed"

    async def test_a_failed_trial_opens_it_again_for_another_cooldown(self):
        clock = FakeClock()
        provider = guarded(ScriptedProvider("openai", DOWN), clock)
        await fail_times(provider, 5)
        clock.advance(15)
        await fail_times(provider, 1)
        assert state(provider.breaker) == "open"
        clock.advance(10)
        with pytest.raises(LLMUnavailableError):
            await provider.complete(QUESTION)

    def test_only_a_limited_number_of_trial_calls_go_through_at_once(self):
        clock = FakeClock()
        breaker = CircuitBreaker(name="openai", clock=clock)
        for _ in range(5):
            breaker.record_failure()
        clock.advance(15)
        assert [breaker.allow() for _ in range(3)] == [True, True, False]
        breaker.release()  # a trial that was cancelled frees its slot
        assert breaker.allow()

    def test_the_thresholds_come_from_the_policy(self):
        policy = ResiliencePolicy(failure_threshold=2, cooldown_seconds=1.0)
        clock = FakeClock()
        provider = ResilientProvider(ScriptedProvider("x", "ok"), policy=policy, clock=clock)
        provider.breaker.record_failure()
        provider.breaker.record_failure()
        assert state(provider.breaker) == "open"
        clock.advance(1.0)
        assert state(provider.breaker) == "half_open"
