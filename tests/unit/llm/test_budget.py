"""Checks before a call: the monthly budget and the calls-per-minute bucket."""

import uuid

import pytest

from metachat.llm.budget import CallRateLimiter, check_budget, take_token
from metachat.llm.errors import LLMBudgetExceededError, LLMRateLimitExceededError
from tests.unit.llm.fakes import FakeClock

TENANT = uuid.UUID(int=1)
OTHER = uuid.UUID(int=2)


class TestCheckBudget:
    def test_no_budget_means_no_limit(self):
        check_budget(10**12, None, 10**6)

    def test_a_call_that_fits_is_allowed_up_to_the_last_micro_dollar(self):
        check_budget(900_000, 1_000_000, 100_000)

    def test_a_call_that_could_overrun_is_refused_before_it_is_made(self):
        with pytest.raises(LLMBudgetExceededError) as caught:
            check_budget(990_000, 1_000_000, 20_000)
        assert not caught.value.retryable
        assert caught.value.message == (
            "the monthly budget of USD 1.00 would be exceeded: USD 0.99 spent, "
            "this call may cost up to USD 0.02"
        )

    def test_a_zero_budget_allows_only_free_calls(self):
        check_budget(0, 0, 0)
        with pytest.raises(LLMBudgetExceededError):
            check_budget(0, 0, 1)


class TestCallRateLimit:
    def test_allows_the_limit_in_a_burst_then_refuses_with_the_wait(self):
        limiter = CallRateLimiter(clock=FakeClock())
        for _ in range(3):
            limiter.acquire(TENANT, calls_per_minute=3)
        with pytest.raises(LLMRateLimitExceededError) as caught:
            limiter.acquire(TENANT, calls_per_minute=3)
        assert caught.value.retry_after == pytest.approx(20.0)
        assert "more than 3 model calls a minute" in caught.value.message

    def test_the_bucket_refills_with_time(self):
        clock = FakeClock()
        limiter = CallRateLimiter(clock=clock)
        for _ in range(3):
            limiter.acquire(TENANT, calls_per_minute=3)
        clock.advance(20)
        limiter.acquire(TENANT, calls_per_minute=3)
        with pytest.raises(LLMRateLimitExceededError):
            limiter.acquire(TENANT, calls_per_minute=3)

    def test_tenants_have_their_own_buckets(self):
        limiter = CallRateLimiter(clock=FakeClock())
        limiter.acquire(TENANT, calls_per_minute=1)
        limiter.acquire(OTHER, calls_per_minute=1)
        with pytest.raises(LLMRateLimitExceededError):
            limiter.acquire(TENANT, calls_per_minute=1)

    def test_no_limit_is_unlimited(self):
        limiter = CallRateLimiter(clock=FakeClock())
        for _ in range(1000):
            limiter.acquire(TENANT, calls_per_minute=None)

    def test_memory_is_bounded_by_forgetting_the_least_recent_tenant(self):
        limiter = CallRateLimiter(clock=FakeClock(), max_tenants=1)
        limiter.acquire(TENANT, calls_per_minute=1)
        limiter.acquire(OTHER, calls_per_minute=1)
        limiter.acquire(TENANT, calls_per_minute=1)  # forgotten, so full again

    def test_the_pure_bucket_never_fills_past_its_burst(self):
        bucket = take_token(None, now=0.0, calls_per_minute=60, burst=2)
        assert bucket.tokens == 1.0
        later = take_token(bucket, now=3600.0, calls_per_minute=60, burst=2)
        assert later.tokens == 1.0
