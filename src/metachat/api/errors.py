"""Every error answered as RFC 9457 problem details (`application/problem+json`).

Each body has `type`, `title`, `status`, `detail` and `instance`, plus the extension members
`code` (stable, documented, safe to switch on) and `correlation_id` (quote it when reporting).
Domain errors keep their own status and code; Litestar's request validation errors list the
offending fields; unknown routes and methods get 404/405; anything unexpected is a 500 that says
nothing about the internals and is logged with the correlation id.
"""

import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.types import ExceptionHandlersMap

from metachat.api.correlation import correlation_id_of
from metachat.kernel.errors import DomainError

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:metachat:problem:"
"""Problem types are URNs (`urn:metachat:problem:<code>`): stable names, not web pages."""

_RESERVED = frozenset({"type", "title", "status", "detail", "instance", "code", "correlation_id"})
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}

log = structlog.get_logger()


class FieldProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One offending input field of a rejected request."""

    field: str
    message: str
    source: str | None = None


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem details body (for the OpenAPI document)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    correlation_id: str
    errors: list[FieldProblem] | None = None


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[dict[str, Any]]:
    """Build a problem details response for the current request."""
    body: dict[str, Any] = {
        "type": f"{TYPE_PREFIX}{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        "correlation_id": str(correlation_id_of(request.scope)),
    }
    body.update({k: v for k, v in (extra or {}).items() if k not in _RESERVED})
    all_headers = dict(headers or {})
    if status == HTTPStatus.UNAUTHORIZED:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="metachat"')
    return Response(body, status_code=int(status), media_type=PROBLEM_JSON, headers=all_headers)


def problem_responses(statuses: tuple[int, ...]) -> dict[int, ResponseSpec]:
    """OpenAPI descriptions of the problem details answers a route can give."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=HTTPStatus(status).phrase,
            generate_examples=False,
        )
        for status in statuses
    }


def _on_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    extra: dict[str, Any] = {
        k: v if v is None or isinstance(v, str | int | float | bool) else str(v)
        for k, v in exc.extra.items()
    }
    if "field" in extra:
        extra["errors"] = [{"field": extra.pop("field"), "message": exc.detail}]
    return problem_response(
        request, status=exc.status, code=exc.code, title=exc.title, detail=exc.detail, extra=extra
    )


def _field_problems(extra: Any) -> list[dict[str, Any]]:
    items = extra if isinstance(extra, list) else []
    return [
        {
            "field": str(i.get("key") or "body"),
            "message": str(i.get("message")),
            "source": i.get("source"),
        }
        for i in items
        if isinstance(i, dict)
    ]


def _on_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    # 422: the request was well-formed JSON (or well-formed parameters) with the wrong content.
    return problem_response(
        request,
        status=HTTPStatus.UNPROCESSABLE_ENTITY,
        code="invalid_request",
        title="The request has invalid fields",
        detail="One or more fields are missing or invalid; see `errors`.",
        extra={"errors": _field_problems(exc.extra)},
    )


def _on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if exc.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return _on_unexpected(request, exc)
    phrase = HTTPStatus(exc.status_code).phrase
    code = _HTTP_CODES.get(exc.status_code) or re.sub(r"\W+", "_", phrase.lower()).strip("_")
    detail = (
        exc.detail
        if exc.detail and exc.detail != phrase
        else f"{phrase}: {request.method} {request.url.path}"
    )
    return problem_response(
        request, status=exc.status_code, code=code, title=phrase, detail=detail, headers=exc.headers
    )


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    correlation_id = str(correlation_id_of(request.scope))
    log.error(
        "unhandled_error",
        correlation_id=correlation_id,
        method=request.method,
        path=request.url.path,
        exc_info=exc,
    )
    return problem_response(
        request,
        status=HTTPStatus.INTERNAL_SERVER_ERROR,
        code="internal_error",
        title="Internal server error",
        detail="The server could not complete the request; quote the correlation id to report it.",
    )


def exception_handlers() -> ExceptionHandlersMap:
    """The app's exception handlers: most specific class wins (Litestar walks the MRO)."""
    handlers: dict[type[Exception], Callable[..., Response[Any]]] = {
        DomainError: _on_domain_error,
        ValidationException: _on_validation,
        HTTPException: _on_http_error,
        Exception: _on_unexpected,
    }
    return handlers  # type: ignore[return-value]
