"""The llm module's errors: every SDK exception becomes one of these, so callers see one family.

`retryable` says whether trying the same provider again may succeed (the retry layer reads it);
`code` is stable, so the orchestrator can put it in an event or a hand-off reason.
"""

import email.utils
import math
import time
from collections.abc import Mapping
from typing import ClassVar

import msgspec


class LLMError(Exception):
    """A call to a language model failed; `provider` names which one."""

    code: ClassVar[str] = "llm_error"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retryable: bool | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.status = status

    @property
    def reason(self) -> str:
        """One line for a log, an event or a human agent: provider, code and message."""
        return f"{self.provider}: {self.code}: {self.message}"


class LLMRateLimitedError(LLMError):
    """The provider answered 429; `retry_after` holds its `retry-after(-ms)` header, if any."""

    code = "llm_rate_limited"
    default_retryable = True


class LLMTimeoutError(LLMError):
    """The call took longer than its timeout (ours or the SDK's)."""

    code = "llm_timeout"
    default_retryable = True


class LLMServerError(LLMError):
    """The provider failed on its side (5xx, overloaded, an error event in a stream)."""

    code = "llm_server_error"
    default_retryable = True


class LLMConnectionError(LLMError):
    """The provider could not be reached (DNS, refused connection, TLS)."""

    code = "llm_connection_error"
    default_retryable = True


class LLMRequestError(LLMError):
    """The provider refused the request (4xx other than 429): the same request fails again."""

    code = "llm_request_error"


class LLMUnsupportedError(LLMError):
    """The provider cannot do this at all (Anthropic has no embeddings)."""

    code = "llm_unsupported"


class LLMConfigurationError(LLMError):
    """A tenant's provider settings cannot be used (missing key, refused base URL)."""

    code = "llm_configuration_error"


class LLMBudgetExceededError(LLMError):
    """The tenant's monthly budget would be exceeded by this call; it was not made."""

    code = "llm_budget_exceeded"


class LLMRateLimitExceededError(LLMError):
    """The tenant's call rate would make this call wait longer than allowed; it was not made.

    `retry_after` is how long it would have had to wait for its turn.
    """

    code = "llm_rate_limit_exceeded"


class ProviderFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Why one provider of a fallback chain did not answer."""

    provider: str
    code: str
    message: str

    @classmethod
    def of(cls, error: LLMError) -> "ProviderFailure":
        """The failure recorded for `error`."""
        return cls(provider=error.provider, code=error.code, message=error.message)

    def __str__(self) -> str:
        return f"{self.provider}: {self.code}: {self.message}"


class LLMUnavailableError(LLMError):
    """No provider could answer (circuit open, or every provider of the chain failed).

    `failures` lists each provider's reason, in the order they were tried; the orchestrator
    hands the conversation to a human with `reason`.
    """

    code = "llm_unavailable"

    def __init__(self, failures: tuple[ProviderFailure, ...], *, provider: str) -> None:
        listed = "; ".join(str(f) for f in failures) or "no provider configured"
        super().__init__(f"no provider answered ({listed})", provider=provider)
        self.failures = failures


def error_for_status(
    status: int, message: str, *, provider: str, headers: Mapping[str, str]
) -> LLMError:
    """Our error for an HTTP status from a provider.

    429 is a rate limit (retryable after `retry-after`); 408 a timeout; 5xx a server error, and
    so is a status below 400, which is how the SDKs report an error event inside a 200 stream
    (Anthropic's mid-stream `overloaded_error`). Every other 4xx is the request's own fault and
    would fail again, so it is not retried.
    """
    text = f"HTTP {status}: {message}"[:300]
    if status == HTTP_TOO_MANY_REQUESTS:
        wait = retry_after_from_headers(headers)
        return LLMRateLimitedError(text, provider=provider, retry_after=wait, status=status)
    if status == HTTP_REQUEST_TIMEOUT:
        return LLMTimeoutError(text, provider=provider, status=status)
    if status >= HTTP_SERVER_ERROR or status < HTTP_BAD_REQUEST:
        return LLMServerError(text, provider=provider, status=status)
    return LLMRequestError(text, provider=provider, status=status)


HTTP_BAD_REQUEST = 400
HTTP_REQUEST_TIMEOUT = 408
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500
MAX_RETRY_AFTER_SECONDS = 3600.0
"""A `retry-after` beyond this is treated as absent (a broken header, not a plan)."""


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date).

    OpenAI sends `retry-after-ms` beside `retry-after`; the millisecond one is more precise, so
    it wins. Anthropic sends `retry-after` in seconds.
    """
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        seconds: float | None
        try:
            seconds = float(value) / divisor
        except ValueError:
            seconds = _seconds_until_http_date(value) if divisor == 1.0 else None
        if (
            seconds is not None
            and math.isfinite(seconds)
            and 0 <= seconds <= (MAX_RETRY_AFTER_SECONDS)
        ):
            return seconds
    return None


def _seconds_until_http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed)) - time.time())
