"""The correlation id of an HTTP request: from the caller's header or minted, cached in its scope.

The id is taken from `X-Correlation-ID` (or `X-Request-ID`) when it is a valid UUID, otherwise a
UUIDv7 is minted. It is cached in the ASGI scope's state, so that the middleware, the handlers,
the error handlers and the response header all see the same value. Here rather than in the API
assembly so that every context's routes can read it without a dependency of their own (Litestar
resolves two or more dependencies of a handler in an anyio task group, per request).
"""

import uuid
from collections.abc import Iterable
from typing import Any

from metachat.kernel.ids import uuid7

_ACCEPTED = (b"x-correlation-id", b"x-request-id")
_STATE_KEY = "metachat_correlation_id"


def _from_headers(headers: Iterable[tuple[bytes, bytes]]) -> uuid.UUID | None:
    values = {name.lower(): value for name, value in headers}
    for name in _ACCEPTED:
        raw = values.get(name)
        if raw is None:
            continue
        try:
            return uuid.UUID(raw.decode("latin-1").strip())
        except ValueError:
            continue
    return None


def correlation_id_of(scope: Any) -> uuid.UUID:
    """Return the request's correlation id, choosing it on first use and caching it in the scope.

    `scope` is an ASGI scope (a typed dict, of Litestar's or another framework's typing).
    """
    state: dict[str, Any] = scope.setdefault("state", {})
    cached = state.get(_STATE_KEY)
    if isinstance(cached, uuid.UUID):
        return cached
    chosen = _from_headers(scope.get("headers", ())) or uuid7()
    state[_STATE_KEY] = chosen
    return chosen
