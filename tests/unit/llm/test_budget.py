"""Checks before a call: the monthly budget and the calls-per-minute bucket (waits, bound)."""

import asyncio
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metachat.llm.budget import (
    DEFAULT_MAX_WAIT_SECONDS,
    CallRateLimiter,
    TokenBucket,
    check_budget,
    take_token,
)
from metachat.llm.errors import LLMBudgetExceededError, LLMRateLimitExceededError
from tests.unit.llm.fakes import FakeClock, RecordingSleep

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


def _limiter(**options: Any) -> tuple[CallRateLimiter, RecordingSleep]:
    """A limiter on a fake clock, with the sleep that moves it."""
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    return CallRateLimiter(clock=clock, sleep=sleep, **options), sleep


def _reserve(bucket: TokenBucket | None, now: float, **limits: Any) -> tuple[TokenBucket, float]:
    taken = take_token(bucket, now=now, **limits)
    return taken.bucket, taken.wait


class TestTakeToken:
    def test_a_full_bucket_gives_the_burst_at_once(self):
        bucket = None
        for _ in range(3):
            bucket, wait = _reserve(bucket, 0.0, calls_per_minute=3)
            assert wait == 0.0
        assert bucket is not None
        assert bucket.tokens == 0.0

    def test_past_the_burst_waits_grow_in_arrival_order(self):
        bucket, waits = None, []
        for _ in range(6):
            bucket, wait = _reserve(bucket, 0.0, calls_per_minute=3, max_wait=60.0)
            waits.append(wait)
        assert waits == pytest.approx([0.0, 0.0, 0.0, 20.0, 40.0, 60.0])
        assert bucket is not None
        assert bucket.tokens == pytest.approx(-3.0)  # three tokens promised ahead

    def test_the_refill_pays_off_reservations_before_it_fills_the_bucket(self):
        bucket, _ = _reserve(None, 0.0, calls_per_minute=60, burst=1, max_wait=10.0)
        bucket, wait = _reserve(bucket, 0.0, calls_per_minute=60, burst=1, max_wait=10.0)
        assert wait == pytest.approx(1.0)
        bucket, wait = _reserve(bucket, 1.5, calls_per_minute=60, burst=1, max_wait=10.0)
        assert wait == pytest.approx(0.5)  # due one second after the one before
        bucket, wait = _reserve(bucket, 60.0, calls_per_minute=60, burst=1, max_wait=10.0)
        assert wait == 0.0
        assert bucket.tokens == 0.0

    def test_a_wait_past_the_bound_is_refused_with_the_wait_it_would_have_had(self):
        bucket = None
        for _ in range(4):
            bucket, _ = _reserve(bucket, 0.0, calls_per_minute=3, max_wait=20.0)
        with pytest.raises(LLMRateLimitExceededError) as caught:
            take_token(bucket, now=0.0, calls_per_minute=3, max_wait=20.0)
        assert caught.value.retry_after == pytest.approx(40.0)
        assert caught.value.code == "llm_rate_limit_exceeded"
        assert caught.value.message == (
            "more than 3 model calls a minute; the next call is due in 40.0s, "
            "longer than the 20s a call may wait"
        )

    def test_a_refused_call_reserves_nothing(self):
        bucket, _ = _reserve(None, 0.0, calls_per_minute=60, burst=1)
        with pytest.raises(LLMRateLimitExceededError):
            take_token(bucket, now=0.0, calls_per_minute=60, burst=1)
        assert take_token(bucket, now=1.0, calls_per_minute=60, burst=1).wait == 0.0

    def test_without_a_bound_nothing_waits(self):
        bucket, _ = _reserve(None, 0.0, calls_per_minute=60, burst=1)
        with pytest.raises(LLMRateLimitExceededError) as caught:
            take_token(bucket, now=0.5, calls_per_minute=60, burst=1)
        assert caught.value.retry_after == pytest.approx(0.5)

    def test_the_bucket_never_fills_past_its_burst(self):
        bucket, _ = _reserve(None, 0.0, calls_per_minute=60, burst=2)
        assert bucket.tokens == 1.0
        later, _ = _reserve(bucket, 3600.0, calls_per_minute=60, burst=2)
        assert later.tokens == 1.0

    @given(
        calls_per_minute=st.integers(min_value=1, max_value=600),
        burst=st.none() | st.integers(min_value=1, max_value=10),
        max_wait=st.floats(min_value=0.0, max_value=120.0),
        gaps=st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=40),
    )
    def test_calls_due_in_any_window_never_exceed_the_burst_plus_the_refill(
        self, calls_per_minute: int, burst: int | None, max_wait: float, gaps: list[float]
    ) -> None:
        limits: dict[str, Any] = {"calls_per_minute": calls_per_minute, "burst": burst}
        rate, capacity = calls_per_minute / 60, burst or calls_per_minute
        bucket: TokenBucket | None = None
        now, due, refused = 0.0, [], []
        for gap in gaps:
            now += gap
            try:
                bucket, wait = _reserve(bucket, now, max_wait=max_wait, **limits)
            except LLMRateLimitExceededError as exc:
                refused.append(exc.retry_after)
                continue
            assert wait <= max_wait
            due.append(now + wait)
        assert all(wait is not None and wait > max_wait for wait in refused)
        assert due == sorted(due)  # served in arrival order
        for first, start in enumerate(due):
            for last in range(first, len(due)):
                window = due[last] - start
                assert last - first + 1 <= capacity + rate * window + 1e-6


class TestCallRateLimiter:
    async def test_allows_the_burst_then_waits_each_call_its_turn(self):
        limiter, sleep = _limiter(max_wait=20.0)
        for _ in range(4):
            await limiter.acquire(TENANT, calls_per_minute=3)
        assert sleep.waits == pytest.approx([20.0])

    async def test_concurrent_callers_are_served_in_arrival_order(self):
        sleep = RecordingSleep()  # the clock stands still: all arrive at once
        limiter = CallRateLimiter(clock=FakeClock(), sleep=sleep, max_wait=60.0)
        await asyncio.gather(*(limiter.acquire(TENANT, calls_per_minute=3) for _ in range(6)))
        assert sleep.waits == pytest.approx([20.0, 40.0, 60.0])

    async def test_a_wait_past_the_bound_is_refused_without_sleeping(self):
        limiter, sleep = _limiter(max_wait=10.0)
        for _ in range(3):
            await limiter.acquire(TENANT, calls_per_minute=3)
        with pytest.raises(LLMRateLimitExceededError) as caught:
            await limiter.acquire(TENANT, calls_per_minute=3)
        assert caught.value.retry_after == pytest.approx(20.0)
        assert sleep.waits == []

    def test_the_default_bound_waits_twenty_seconds_at_most(self):
        limiter, _ = _limiter()
        assert DEFAULT_MAX_WAIT_SECONDS == 20.0
        waits = [limiter.reserve(TENANT, calls_per_minute=3) for _ in range(4)]
        assert waits == pytest.approx([0.0, 0.0, 0.0, 20.0])
        with pytest.raises(LLMRateLimitExceededError) as caught:
            limiter.reserve(TENANT, calls_per_minute=3)
        assert caught.value.retry_after == pytest.approx(40.0)

    async def test_tenants_have_their_own_buckets(self):
        limiter = CallRateLimiter(clock=FakeClock(), max_wait=0.0)
        await limiter.acquire(TENANT, calls_per_minute=1)
        await limiter.acquire(OTHER, calls_per_minute=1)
        with pytest.raises(LLMRateLimitExceededError):
            await limiter.acquire(TENANT, calls_per_minute=1)

    async def test_no_limit_is_unlimited(self):
        limiter, sleep = _limiter(max_wait=0.0)
        for _ in range(1000):
            await limiter.acquire(TENANT, calls_per_minute=None)
        assert sleep.waits == []

    async def test_memory_is_bounded_by_forgetting_the_least_recent_tenant(self):
        limiter = CallRateLimiter(clock=FakeClock(), max_wait=0.0, max_tenants=1)
        await limiter.acquire(TENANT, calls_per_minute=1)
        await limiter.acquire(OTHER, calls_per_minute=1)
        await limiter.acquire(TENANT, calls_per_minute=1)  # forgotten, so full again
