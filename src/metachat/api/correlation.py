"""Correlation ids: one per request, from the caller's header or minted here, carried everywhere.

The id is taken from `X-Correlation-ID` (or `X-Request-ID`) when it is a valid UUID, otherwise a
UUIDv7 is minted (`kernel.correlation`). It is cached in the ASGI scope so that the middleware,
the handlers, the error handlers and the response header all see the same value, even for
requests that never reach a route (404/405 are answered before any route middleware runs).
"""

import time
import uuid
from typing import Any

import structlog
from litestar import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from metachat.kernel.correlation import correlation_id_of
from metachat.kernel.logging import bound
from metachat.kernel.tenancy import tenant_scope

HEADER = "X-Correlation-ID"
_QUIET_PREFIXES = ("/health/", "/metrics")

log = structlog.get_logger()


def provide_correlation_id(request: Request[Any, Any, Any]) -> uuid.UUID:
    """Litestar dependency: the id handlers put in the metadata of the events they cause."""
    return correlation_id_of(request.scope)


__all__ = ["HEADER", "CorrelationMiddleware", "correlation_id_of", "provide_correlation_id"]


async def add_correlation_header(message: Message, scope: Scope) -> None:
    """`before_send` hook: echo the correlation id on every HTTP response, errors included."""
    if scope["type"] != ScopeType.HTTP or message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    headers[HEADER] = str(correlation_id_of(scope))


class CorrelationMiddleware(ASGIMiddleware):
    """Binds the correlation id to every log line of the request and logs one line per request."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Run the request inside a structlog context carrying its correlation id."""
        status = 500
        started = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        correlation_id = str(correlation_id_of(scope))
        # tenant_id=None: the auth guard binds the caller's tenant (for the logs and for
        # row-level security) inside this block, and leaving the block restores the previous
        # values, so no request's tenant outlives the request.
        with bound(correlation_id=correlation_id, tenant_id=None), tenant_scope(None):
            try:
                await next_app(scope, receive, capture)
            finally:
                # Probes and scrapes arrive every few seconds; they would drown the request log.
                quiet = scope["path"].startswith(_QUIET_PREFIXES)
                (log.debug if quiet else log.info)(
                    "http_request",
                    method=scope.get("method"),
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
