"""Fixtures for the HTTP API: the app over its own fresh database, a client, tenants with keys."""

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from metachat.api.app import create_app
from metachat.bootstrap import Deps, build
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.settings import Settings
from metachat.tenants.handlers import IssuedKey, create_tenant
from tests.conftest import make_settings


@pytest.fixture(scope="session")
def api_settings(new_database: Callable[[], str]) -> Settings:
    # A database of its own: health and metrics read global tables (heartbeats, outbox) that
    # other test modules write into the shared one.
    return make_settings(new_database())


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_deps(api_settings: Settings) -> AsyncIterator[Deps]:
    built = await build(api_settings, pool_size=5)
    yield built
    await built.close()


@pytest.fixture(scope="session")
def app(api_deps: Deps) -> Litestar:
    return create_app(api_deps)


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


class Tenant(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: uuid.UUID
    key_id: uuid.UUID
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest_asyncio.fixture(loop_scope="session")
async def new_tenant(api_deps: Deps) -> Callable[..., Any]:
    async def make(name: str = "Acme") -> Tenant:
        issued: IssuedKey = await create_tenant(
            name, deps=api_deps.tenants, actor=Actor.operator("test"), correlation_id=uuid7()
        )
        return Tenant(tenant_id=issued.tenant_id, key_id=issued.key_id, api_key=issued.api_key)

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(new_tenant: Callable[..., Any]) -> Tenant:
    return await new_tenant("Acme")


@pytest_asyncio.fixture(loop_scope="session")
async def other_tenant(new_tenant: Callable[..., Any]) -> Tenant:
    return await new_tenant("Globex")


async def write_relay_heartbeat(deps: Deps, *, age_seconds: float) -> None:
    async with deps.engine.begin() as conn:
        await conn.execute(
            text("""INSERT INTO eventstore.heartbeats (name, holder, beat_at, processed)
                    VALUES ('relay', 'test', now() - make_interval(secs => :age), 7)
                    ON CONFLICT (name) DO UPDATE SET beat_at = excluded.beat_at,
                        holder = excluded.holder, processed = excluded.processed"""),
            {"age": age_seconds},
        )


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:metachat:problem:{code}"
    for member in ("title", "detail", "instance", "correlation_id"):
        assert body[member], member
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    return body
