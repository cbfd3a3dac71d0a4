"""A circuit breaker per provider: stop calling a provider that keeps failing, try it again later.

closed --(N consecutive failures)--> open --(cooldown elapsed)--> half-open
half-open --(a trial call succeeds)--> closed;  half-open --(a trial call fails)--> open.
While open, calls fail at once (no network), so the fallback chain moves on without waiting
for timeouts. Only transient failures count (timeouts, 5xx, 429, connection errors): a provider
that answers "bad request" is up, and the request is at fault, not the provider.
"""

import time
from typing import Literal

import structlog

from metachat.llm.ports import MonotonicClock

log = structlog.get_logger()

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """The health of one provider as seen by this process. Not shared across processes."""

    def __init__(
        self,
        *,
        name: str,
        failure_threshold: int = 5,
        cooldown_seconds: float = 15.0,
        half_open_max_calls: int = 2,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._max_trials = half_open_max_calls
        self._clock = clock
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0

    @property
    def state(self) -> CircuitState:
        """The current state; an open circuit whose cooldown has elapsed reads as half-open."""
        if self._state == "open" and self._clock() - self._opened_at >= self._cooldown:
            return "half_open"
        return self._state

    @property
    def retry_in(self) -> float:
        """Seconds until an open circuit lets a trial call through (0 if it would now)."""
        if self._state != "open":
            return 0.0
        return max(0.0, self._cooldown - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """Whether a call may go ahead now; in half-open this takes one of the trial slots."""
        if self.state == "closed":
            return True
        if self._state == "open":
            if self.state == "open":
                return False
            self._state = "half_open"
            self._trials = 0
            log.info("llm_circuit_half_open", provider=self.name)
        if self._trials >= self._max_trials:
            return False
        self._trials += 1
        return True

    def record_success(self) -> None:
        """The provider answered: close the circuit and forget earlier failures."""
        if self._state != "closed":
            log.info("llm_circuit_closed", provider=self.name)
        self._state = "closed"
        self._failures = 0
        self._trials = 0

    def record_failure(self) -> None:
        """The provider failed transiently: count it, and open after too many in a row."""
        if self._state == "half_open":
            self._open()
            return
        self._failures += 1
        if self._state == "closed" and self._failures >= self._threshold:
            self._open()

    def release(self) -> None:
        """A call ended without telling anything about the provider (cancelled): free its slot."""
        if self._state == "half_open" and self._trials > 0:
            self._trials -= 1

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._trials = 0
        log.warning(
            "llm_circuit_opened",
            provider=self.name,
            consecutive_failures=self._failures,
            cooldown_seconds=self._cooldown,
        )
