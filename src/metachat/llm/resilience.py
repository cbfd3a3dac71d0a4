"""Retries with backoff and jitter, a timeout on every call, and a circuit breaker, per provider.

`ResilientProvider` wraps any provider. Each attempt runs under `asyncio.timeout`, so no call
can hang however the SDK or the network behaves; a stream is bounded by its time to first item
and by every idle gap after it. Only transient errors are retried (`LLMError.retryable`), a
stream only if it failed before yielding anything: once text has reached the customer, a retry
would repeat it.
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import msgspec
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from metachat.llm.breaker import CircuitBreaker
from metachat.llm.errors import (
    LLMError,
    LLMServerError,
    LLMTimeoutError,
    LLMUnavailableError,
    ProviderFailure,
)
from metachat.llm.ports import (
    Completion,
    CompletionRequest,
    LLMProvider,
    MonotonicClock,
    StreamItem,
    aclose,
)

log = structlog.get_logger()

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class ResiliencePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How hard to try one provider before giving up on it (and moving down the chain)."""

    timeout_seconds: float = 30.0
    """Bound on every call: a whole completion or embedding, or a stream's first item."""
    stream_idle_timeout_seconds: float = 30.0
    """Bound on each gap between two items of a stream once it has started."""
    max_attempts: int = 3
    """Attempts per call, the first included."""
    backoff_base_seconds: float = 0.25
    backoff_multiplier: float = 2.0
    backoff_max_seconds: float = 5.0
    """Full jitter: before attempt n+1, wait a uniform draw from 0 to
    min(max, base * multiplier^(n-1)), so clients that failed together do not retry together."""
    max_retry_after_seconds: float = 30.0
    """A provider asking to wait longer than this is not retried: the chain moves on instead."""
    failure_threshold: int = 5
    """Consecutive transient failures that open the circuit."""
    cooldown_seconds: float = 15.0
    """How long an open circuit refuses calls before letting trial calls through."""
    half_open_max_calls: int = 2
    """Trial calls let through at once while half-open."""


class ResilientProvider:
    """A provider with retries, timeouts and a circuit breaker; same interface as the inner one."""

    def __init__(
        self,
        inner: LLMProvider,
        *,
        policy: ResiliencePolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._inner = inner
        self._policy = policy or ResiliencePolicy()
        p = self._policy
        self.breaker = breaker or CircuitBreaker(
            name=inner.name,
            failure_threshold=p.failure_threshold,
            cooldown_seconds=p.cooldown_seconds,
            half_open_max_calls=p.half_open_max_calls,
            clock=clock,
        )
        self._sleep = sleep
        self._jitter = jitter

    @property
    def name(self) -> str:
        """The inner provider's name."""
        return self._inner.name

    async def complete(self, request: CompletionRequest) -> Completion:
        """The inner completion, retried and bounded."""
        return await self._retrying(lambda: self._inner.complete(request))

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The inner embeddings, retried and bounded."""
        return await self._retrying(lambda: self._inner.embed(texts))

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        """The inner stream; retried only while it has yielded nothing."""
        iterator, item = await self._retrying(lambda: self._first_item(request))
        try:
            yield item
            while not isinstance(item, Completion):
                item = await self._next_item(iterator)
                yield item
        finally:
            await aclose(iterator)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        result: T = await retrying(self._attempt, call)
        return result

    async def _attempt(self, call: Callable[[], Awaitable[T]]) -> T:
        if not self.breaker.allow():
            message = (
                f"circuit open after repeated failures; next trial in {self.breaker.retry_in:.1f}s"
            )
            failure = ProviderFailure(provider=self.name, code="llm_circuit_open", message=message)
            raise LLMUnavailableError((failure,), provider=self.name)
        try:
            async with asyncio.timeout(self._policy.timeout_seconds):
                result = await call()
        except TimeoutError as exc:
            self.breaker.record_failure()
            message = f"no answer within {self._policy.timeout_seconds:g}s"
            raise LLMTimeoutError(message, provider=self.name) from exc
        except LLMError as exc:
            self._judge(exc)
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record_success()
        return result

    async def _first_item(
        self, request: CompletionRequest
    ) -> tuple[AsyncIterator[StreamItem], StreamItem]:
        iterator = aiter(self._inner.stream(request))
        try:
            return iterator, await anext(iterator)
        except StopAsyncIteration:
            await aclose(iterator)
            raise LLMServerError("the stream ended before any item", provider=self.name) from None
        except BaseException:
            await aclose(iterator)
            raise

    async def _next_item(self, iterator: AsyncIterator[StreamItem]) -> StreamItem:
        idle = self._policy.stream_idle_timeout_seconds
        try:
            async with asyncio.timeout(idle):
                return await anext(iterator)
        except TimeoutError as exc:
            self.breaker.record_failure()
            raise LLMTimeoutError(f"the stream stalled for {idle:g}s", provider=self.name) from exc
        except StopAsyncIteration:
            raise LLMServerError(
                "the stream ended without a completion", provider=self.name
            ) from None
        except LLMError as exc:
            self._judge(exc)
            raise

    def _judge(self, error: LLMError) -> None:
        # Transient errors say the provider is unwell; any other answer says it is up.
        if isinstance(error, LLMUnavailableError):
            return
        if error.retryable:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()

    def _should_retry(self, error: BaseException) -> bool:
        if not isinstance(error, LLMError) or not error.retryable:
            return False
        wait = error.retry_after
        return wait is None or wait <= self._policy.max_retry_after_seconds

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, LLMError) and error.retry_after is not None:
            return error.retry_after  # the provider said when; sooner would be refused again
        p = self._policy
        ceiling = p.backoff_base_seconds * p.backoff_multiplier ** (state.attempt_number - 1)
        return self._jitter() * min(p.backoff_max_seconds, ceiling)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "llm_call_retrying",
            provider=self.name,
            attempt=state.attempt_number,
            error_code=getattr(error, "code", type(error).__name__),
            wait_seconds=round(state.upcoming_sleep, 3),
        )
