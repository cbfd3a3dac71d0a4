"""Problem details mapping, on a minimal app with the real handlers and middleware (no I/O)."""

import uuid

import pytest
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import TestClient

from metachat.api.correlation import CorrelationMiddleware, add_correlation_header
from metachat.api.errors import exception_handlers
from metachat.kernel.errors import (
    ConcurrencyError,
    ConflictError,
    DomainError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)

RAISED: dict[str, DomainError] = {
    "conflict": ConflictError("already there", tenant_id=uuid.UUID(int=1)),
    "concurrency": ConcurrencyError("stream moved", expected_version=3),
    "missing": NotFoundError("no such key", key_id="k"),
    "invalid": ValidationError("name too long", field="name"),
    "denied": PermissionDeniedError("needs keys:manage", scope="keys:manage"),
}


@get("/raise/{what:str}")
async def raise_it(what: FromPath[str]) -> None:
    if what == "boom":
        raise KeyError("secret internal detail")
    raise RAISED[what]


@get("/ok")
async def ok() -> dict[str, str]:
    return {"ok": "yes"}


@pytest.fixture(scope="module")
def client():
    app = Litestar(
        [raise_it, ok],
        middleware=[CorrelationMiddleware()],
        before_send=[add_correlation_header],
        exception_handlers=exception_handlers(),
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("what", "status", "code"),
    [
        ("conflict", 409, "conflict"),
        ("concurrency", 409, "concurrency_conflict"),
        ("missing", 404, "not_found"),
        ("invalid", 422, "validation_error"),
        ("denied", 403, "forbidden"),
    ],
)
def test_domain_errors_keep_their_status_and_code(client, what, status, code) -> None:
    response = client.get(f"/raise/{what}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"urn:metachat:problem:{code}"
    assert (body["status"], body["code"]) == (status, code)
    assert body["detail"] == RAISED[what].detail
    assert body["title"] == type(RAISED[what]).title
    assert body["instance"] == f"/raise/{what}"
    assert body["correlation_id"] == response.headers["x-correlation-id"]


def test_domain_extras_become_members_and_fields_become_errors(client) -> None:
    assert client.get("/raise/conflict").json()["tenant_id"] == str(uuid.UUID(int=1))
    assert client.get("/raise/concurrency").json()["expected_version"] == 3
    invalid = client.get("/raise/invalid").json()
    assert invalid["errors"] == [{"field": "name", "message": "name too long"}]
    assert "field" not in invalid


def test_unexpected_errors_say_nothing_of_the_internals(client) -> None:
    response = client.get("/raise/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert "secret internal detail" not in response.text
    assert "KeyError" not in response.text


def test_successful_responses_carry_the_correlation_id_too(client) -> None:
    given = str(uuid.uuid4())
    response = client.get("/ok", headers={"X-Correlation-ID": given})
    assert response.headers["x-correlation-id"] == given
