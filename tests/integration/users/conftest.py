"""Fixtures for tenant users: the API fixtures, plus users created as an operator and logged in."""

import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest_asyncio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from metachat.bootstrap import Deps
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants.commands import Role
from metachat.tenants.users import handlers
from tests.integration.api import conftest as api_fixtures
from tests.integration.api.conftest import Tenant

# The API fixtures, registered here by name (a non-root conftest cannot use pytest_plugins).
api_settings = api_fixtures.api_settings
api_deps = api_fixtures.api_deps
app = api_fixtures.app
client = api_fixtures.client
new_tenant = api_fixtures.new_tenant
tenant = api_fixtures.tenant
other_tenant = api_fixtures.other_tenant

PASSWORD = "correct horse battery staple"  # noqa: S105 - the test users' password


class User(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    access_token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def login(
    client: AsyncTestClient[Litestar], tenant_id: uuid.UUID, email: str, password: str = PASSWORD
) -> Any:
    return await client.post(
        "/v1/auth/login", json={"tenant_id": str(tenant_id), "email": email, "password": password}
    )


@pytest_asyncio.fixture(loop_scope="session")
async def new_user(api_deps: Deps, client: AsyncTestClient[Litestar]) -> Callable[..., Any]:
    async def make(tenant: Tenant, role: Role = "owner") -> User:
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        created = await handlers.create_user(
            tenant.tenant_id,
            email=email,
            password=PASSWORD,
            role=role,
            by_role=None,
            store=api_deps.store,
            actor=Actor.operator("test"),
            correlation_id=uuid7(),
        )
        response = await login(client, tenant.tenant_id, email)
        assert response.status_code == 200, response.text
        body = response.json()
        return User(
            tenant_id=tenant.tenant_id,
            user_id=created.user_id,
            email=email,
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
        )

    return make
