"""Checks made before a call, so a tenant over its limits costs nothing: budget and call rate.

The caller (the orchestrator) passes what it knows (this month's spend from its usage events,
the estimate from `PriceTable.estimate`); nothing here reads a database.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Hashable

import msgspec
import structlog

from metachat.llm.errors import LLMBudgetExceededError, LLMRateLimitExceededError
from metachat.llm.ports import MonotonicClock
from metachat.llm.resilience import Sleep

log = structlog.get_logger()

LIMITS = "limits"
"""The `provider` of errors raised here: no provider was called."""
SECONDS_PER_MINUTE = 60.0
DEFAULT_MAX_WAIT_SECONDS = 20.0
"""How long a call over the tenant's rate may wait its turn before it is refused.

A customer waits this long for an answer rather than lose the assistant (a refusal hands the
conversation to a human, for good). It is far below RabbitMQ's 30-minute delivery acknowledgement
timeout (`consumer_timeout`; the reply consumer acknowledges after the reply), and a
reply cut short by a shutdown (`GRACEFUL_TIMEOUT`, 15 s) is redelivered and answered once.
"""


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
    """A rate limit's state: tokens left and when they were counted (monotonic seconds).

    `tokens` goes below zero when calls are reserved ahead: -2.5 means two and a half tokens
    are promised to callers already waiting.
    """

    tokens: float
    updated_at: float


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    """One call taken from a bucket: the bucket after it, and the seconds until the call is due."""

    bucket: TokenBucket
    wait: float


def take_token(
    bucket: TokenBucket | None,
    *,
    now: float,
    calls_per_minute: int,
    burst: int | None = None,
    max_wait: float = 0.0,
) -> Reservation:
    """Reserve the next call: the bucket after it and the wait until it is due, or raise.

    It refills at `calls_per_minute / 60` tokens a second up to `burst` (a minute's worth by
    default); a missing bucket is full. A call finding no token takes a future one: the level
    goes below zero and the call is due when the refill brings it back to where the token was.
    So callers are served in the order they reserved, each after the one before. A call that
    would wait longer than `max_wait` is not reserved: `LLMRateLimitExceededError`, with
    `retry_after` the wait it would have had (the level never goes below `-max_wait * rate`).
    """
    capacity = float(burst or calls_per_minute)
    rate = calls_per_minute / SECONDS_PER_MINUTE
    tokens = capacity
    if bucket is not None:
        tokens = min(capacity, bucket.tokens + max(0.0, now - bucket.updated_at) * rate)
    wait = max(0.0, (1.0 - tokens) / rate)
    if wait > max_wait:
        raise LLMRateLimitExceededError(
            f"more than {calls_per_minute} model calls a minute; the next call is due in "
            f"{wait:.1f}s, longer than the {max_wait:g}s a call may wait",
            provider=LIMITS,
            retry_after=wait,
        )
    return Reservation(bucket=TokenBucket(tokens=tokens - 1.0, updated_at=now), wait=wait)


class CallRateLimiter:
    """Per-tenant token buckets in this process (N processes allow N times the rate).

    A call over the rate waits its turn, up to `max_wait` seconds; beyond that it is refused.
    """

    def __init__(
        self,
        *,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
        max_tenants: int = 100_000,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait
        self._max = max_tenants
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    async def acquire(self, tenant_id: Hashable, *, calls_per_minute: int | None) -> None:
        """Take one call from the tenant's bucket (None: unlimited), waiting its turn, or raise."""
        wait = self.reserve(tenant_id, calls_per_minute=calls_per_minute)
        if wait > 0:
            log.info("llm_call_rate_waiting", wait_seconds=round(wait, 3))
            await self._sleep(wait)

    def reserve(self, tenant_id: Hashable, *, calls_per_minute: int | None) -> float:
        """Reserve the tenant's next call: seconds until it is due (0: now), or raise.

        Nothing is awaited between reading the bucket and storing it, so concurrent callers
        of one event loop reserve one after another, in the order they arrive.
        """
        if calls_per_minute is None:
            return 0.0
        taken = take_token(
            self._buckets.get(tenant_id),
            now=self._clock(),
            calls_per_minute=calls_per_minute,
            max_wait=self._max_wait,
        )
        self._buckets[tenant_id] = taken.bucket
        self._buckets.move_to_end(tenant_id)
        # Forgetting the least recently seen tenant only refills its bucket (and forgives its
        # reservations, whose callers are then early): memory stays bounded.
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return taken.wait


def _usd(micro: int) -> str:
    return f"USD {micro / 1_000_000:.2f}"
