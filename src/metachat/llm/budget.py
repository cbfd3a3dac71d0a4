"""Checks made before a call, so a tenant over its limits costs nothing: budget and call rate.

The caller (the orchestrator) passes what it knows (this month's spend from its usage events,
the estimate from `PriceTable.estimate`); nothing here reads a database.
"""

import time
from collections import OrderedDict
from collections.abc import Hashable

import msgspec

from metachat.llm.errors import LLMBudgetExceededError, LLMRateLimitExceededError
from metachat.llm.ports import MonotonicClock

LIMITS = "limits"
"""The `provider` of errors raised here: no provider was called."""
SECONDS_PER_MINUTE = 60.0


def check_budget(
    spent_this_month_micro_usd: int,
    monthly_budget_micro_usd: int | None,
    estimated_cost_micro_usd: int,
) -> None:
    """Refuse a call that would take the month's spend past the budget (None: no budget).

    The estimate counts every output token the call may produce, so a call is refused when
    it could overrun, not only when the budget is already spent.
    """
    if monthly_budget_micro_usd is None:
        return
    after = spent_this_month_micro_usd + estimated_cost_micro_usd
    if after > monthly_budget_micro_usd:
        raise LLMBudgetExceededError(
            f"the monthly budget of {_usd(monthly_budget_micro_usd)} would be exceeded: "
            f"{_usd(spent_this_month_micro_usd)} spent, this call may cost up to "
            f"{_usd(estimated_cost_micro_usd)}",
            provider=LIMITS,
        )


class TokenBucket(msgspec.Struct, frozen=True, kw_only=True):
    """A rate limit's state: tokens left and when they were counted (monotonic seconds)."""

    tokens: float
    updated_at: float


def take_token(
    bucket: TokenBucket | None, *, now: float, calls_per_minute: int, burst: int | None = None
) -> TokenBucket:
    """The bucket after one call, or `LLMRateLimitExceededError` with the wait until the next.

    It refills at `calls_per_minute / 60` tokens a second up to `burst` (a minute's worth by
    default); a missing bucket is full.
    """
    capacity = float(burst or calls_per_minute)
    rate = calls_per_minute / SECONDS_PER_MINUTE
    tokens = capacity
    if bucket is not None:
        tokens = min(capacity, bucket.tokens + max(0.0, now - bucket.updated_at) * rate)
    if tokens < 1.0:
        wait = (1.0 - tokens) / rate
        raise LLMRateLimitExceededError(
            f"more than {calls_per_minute} model calls a minute; next call in {wait:.1f}s",
            provider=LIMITS,
            retry_after=wait,
        )
    return TokenBucket(tokens=tokens - 1.0, updated_at=now)


class CallRateLimiter:
    """Per-tenant token buckets in this process (N processes allow N times the rate)."""

    def __init__(
        self, *, clock: MonotonicClock = time.monotonic, max_tenants: int = 100_000
    ) -> None:
        self._clock = clock
        self._max = max_tenants
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def acquire(self, tenant_id: Hashable, *, calls_per_minute: int | None) -> None:
        """Take one call from the tenant's bucket (None: unlimited), or raise."""
        if calls_per_minute is None:
            return
        bucket = take_token(
            self._buckets.get(tenant_id), now=self._clock(), calls_per_minute=calls_per_minute
        )
        self._buckets[tenant_id] = bucket
        self._buckets.move_to_end(tenant_id)
        # Forgetting the least recently seen tenant only refills its bucket: memory stays bounded.
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


def _usd(micro: int) -> str:
    return f"USD {micro / 1_000_000:.2f}"
