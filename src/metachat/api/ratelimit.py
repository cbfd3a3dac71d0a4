"""Rate limits: one token bucket per caller (API key or user), answered with 429 and `Retry-After`.

The buckets live in this process. Each API replica therefore counts on its own: with N replicas
behind a balancer, a caller gets up to N times the configured rate. That is accepted for now
(it bounds abuse and protects each process); a shared limit would need a shared store.

Every `/v1` answer carries `RateLimit-Limit` (the bucket size) and `RateLimit-Remaining` (whole
requests left right now); a refusal adds `Retry-After` (seconds until one request is allowed).
"""

import math
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.handlers import BaseRouteHandler
from litestar.types import Message, Scope

from metachat.kernel.actors import Actor
from metachat.kernel.errors import AuthenticationError
from metachat.settings import RateLimitSettings

_STATE_KEY = "metachat.rate_limit"
_PRUNE_ABOVE = 10_000
"""Past this many buckets, full ones are dropped (a new bucket starts full, so nothing changes)."""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of taking one token: allowed or not, what is left, when to retry."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        """The response headers that tell the caller where it stands."""
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class _Bucket(msgspec.Struct, kw_only=True):
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by caller: `burst` tokens at most, refilled at `rate` per second."""

    def __init__(
        self, settings: RateLimitSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = settings.rate
        self._burst = settings.burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> Decision:
        """Take one token from `key`'s bucket if there is one.

        No lock: the method never awaits, so on the event loop it runs whole, and two requests
        of the same caller can never both take the last token.
        """
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._prune(now)
            bucket = self._buckets[key] = _Bucket(tokens=float(self._burst), updated=now)
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Decision(
                allowed=True, limit=self._burst, remaining=int(bucket.tokens), retry_after=0
            )
        wait = (1.0 - bucket.tokens) / self._rate
        return Decision(
            allowed=False, limit=self._burst, remaining=0, retry_after=max(1, math.ceil(wait))
        )

    def _prune(self, now: float) -> None:
        if len(self._buckets) < _PRUNE_ABOVE:
            return
        full = [
            key
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self._rate >= self._burst
        ]
        for key in full:
            del self._buckets[key]


def caller_key(actor: Actor) -> str:
    """The bucket of a caller: its kind and id (`api_key:<id>`, `user:<id>`)."""
    return f"{actor.kind}:{actor.id}"


def rate_limit_guard(limiter: RateLimiter) -> Any:
    """Return the guard that spends one token of the authenticated caller (runs after auth)."""

    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler
    ) -> None:
        actor = getattr(connection.scope.get("auth"), "actor", None)
        if not isinstance(actor, Actor):
            # The authentication guard runs first; reaching here without a caller is a bug in
            # the guard order, and refusing is the safe answer.
            raise AuthenticationError("not authenticated")
        decision = limiter.take(caller_key(actor))
        connection.scope.setdefault("state", {})[_STATE_KEY] = decision
        if not decision.allowed:
            raise TooManyRequestsException(
                detail=f"rate limit exceeded; retry in {decision.retry_after} s",
                headers=decision.headers(),
            )

    return guard


async def add_rate_limit_headers(message: Message, scope: Scope) -> None:
    """`before_send` hook: put the caller's `RateLimit-*` headers on every limited answer."""
    if scope["type"] != ScopeType.HTTP or message["type"] != "http.response.start":
        return
    decision = scope.get("state", {}).get(_STATE_KEY)
    if isinstance(decision, Decision):
        headers = MutableScopeHeaders.from_message(message)
        for name, value in decision.headers().items():
            headers[name] = value
