"""Bearer authentication (API keys and user access tokens) and per-route scopes.

Every `/v1` handler declares the scope it needs as `opt={"scope": "..."}`; the guard below
authenticates the caller, puts the `Principal` on the connection and refuses a missing scope.
The bearer is either an API key (`mck_...`) or a user access token (`mcu....`); a user's scopes
come from the role they hold now, read on every request, so a demotion takes effect at once.
A guard (rather than a middleware) runs inside the route's exception handling, so a refusal is
answered and logged within the request's correlation context like any other error.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from litestar import Request, Router
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler

from metachat.kernel.errors import AuthenticationError, PermissionDeniedError
from metachat.kernel.tenancy import enter_tenant
from metachat.tenants.commands import SCOPES
from metachat.tenants.handlers import Principal, TenantDeps, authenticate
from metachat.tenants.users.model import scopes_for
from metachat.tenants.users.sessions import authenticate_access
from metachat.tenants.users.tokens import TokenSigner, is_user_token

SCOPE_OPT = "scope"


def _bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "send an API key or an access token as `Authorization: Bearer <token>`"
        )
    return token.strip()


async def principal_of(token: str, tenant_deps: TenantDeps, signer: TokenSigner) -> Principal:
    """Authenticate a bearer token: an API key or a user access token."""
    if not is_user_token(token):
        return await authenticate(token, deps=tenant_deps)
    user = await authenticate_access(tenant_deps.store.engine, signer, token, now=datetime.now(UTC))
    return Principal(
        tenant_id=user.tenant_id,
        user_id=user.user_id,
        role=user.role,
        scopes=scopes_for(user.role),
    )


def api_key_guard(tenant_deps: TenantDeps, signer: TokenSigner) -> Any:
    """Return the guard that authenticates the caller and checks the route's declared scope."""

    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        principal = await principal_of(_bearer_token(connection), tenant_deps, signer)
        connection.scope["auth"] = principal
        # From here on every transaction of the request acts for this tenant under row-level
        # security. Set, like the log binding, without a reset token on purpose: the request
        # runs in its own task (its own context), and CorrelationMiddleware wraps it in
        # `bound(tenant_id=None)`, which restores the previous value when the request ends.
        enter_tenant(principal.tenant_id)
        structlog.contextvars.bind_contextvars(tenant_id=str(principal.tenant_id))
        needed = handler.opt.get(SCOPE_OPT)
        if needed not in principal.scopes:
            raise PermissionDeniedError(
                f"this caller lacks the {needed!r} scope", scope=str(needed)
            )

    return guard


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """Litestar dependency: the caller authenticated by the guard."""
    principal = request.scope.get("auth")
    if not isinstance(principal, Principal):
        raise AuthenticationError("not authenticated")
    return principal


def authenticated_handlers(router: Router) -> Iterator[tuple[str, HTTPRouteHandler]]:
    """Yield each data-serving handler of a router with its path (not the generated OPTIONS)."""
    for route in router.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and handler.http_methods != {"OPTIONS"}:
                yield route.path, handler


def check_declared_scope(path: str, handler: HTTPRouteHandler) -> None:
    """Refuse to build an app with an authenticated route that does not declare a known scope.

    Fails closed at start-up: a route added without `opt={"scope": ...}` would otherwise be
    reachable by any valid key.
    """
    if handler.opt.get(SCOPE_OPT) not in SCOPES:
        raise RuntimeError(
            f"route {path} ({handler.handler_name}) must declare opt={{'scope': ...}} "
            f"with one of {SCOPES}"
        )
