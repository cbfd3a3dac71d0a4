"""The API process remembers authenticated keys, and forgets one the moment it is revoked.

"Another process" is a second `Deps` built on the same database: its own pools and its own key
cache, exactly what a second API process or the operator's CLI has.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from metachat.bootstrap import Deps, build
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.settings import Settings
from metachat.tenants import keys
from metachat.tenants.handlers import issue_api_key, revoke_api_key
from metachat.tenants.keycache import KeyCache
from tests.integration.api.conftest import Tenant, assert_problem


@pytest_asyncio.fixture(loop_scope="session")
async def elsewhere(api_settings: Settings) -> AsyncIterator[Deps]:
    built = await build(api_settings, pool_size=2)
    yield built
    await built.close()


async def _new_key(client: AsyncTestClient[Litestar], tenant: Tenant) -> dict[str, Any]:
    created = await client.post("/v1/api-keys", headers=tenant.auth, json={"name": "cached"})
    assert created.status_code == 201, created.text
    return dict(created.json())


def _bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['api_key']}"}


async def _cached(deps: Deps, api_key: str) -> object | None:
    cache = deps.scoped.tenants.keys
    assert isinstance(cache, KeyCache)
    return cache.peek(keys.digest(api_key, pepper=deps.scoped.tenants.pepper))


async def _until_listening(
    client: AsyncTestClient[Litestar], deps: Deps, key: dict[str, Any]
) -> None:
    """Use the key until this process's cache holds it (its listener is up by then)."""
    for _ in range(200):
        assert (await client.get("/v1/tenant", headers=_bearer(key))).status_code == 200
        if await _cached(deps, key["api_key"]) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the key cache never started listening")


class TestKeyCache:
    async def test_a_used_key_is_remembered(self, client, api_deps, tenant) -> None:
        key = await _new_key(client, tenant)
        await _until_listening(client, api_deps, key)
        remembered = await _cached(api_deps, key["api_key"])
        assert getattr(remembered, "key_id", None) == uuid.UUID(key["id"])

    async def test_revoked_here_it_is_refused_at_once(self, client, api_deps, tenant) -> None:
        key = await _new_key(client, tenant)
        await _until_listening(client, api_deps, key)
        assert (await client.delete(f"/v1/api-keys/{key['id']}", headers=tenant.auth)).is_success
        assert_problem(await client.get("/v1/tenant", headers=_bearer(key)), 401, "unauthenticated")

    async def test_revoked_by_another_process_it_is_refused(
        self, client, api_deps, elsewhere, tenant
    ) -> None:
        key = await _new_key(client, tenant)
        await _until_listening(client, api_deps, key)
        await revoke_api_key(
            tenant.tenant_id,
            uuid.UUID(key["id"]),
            deps=elsewhere.tenants,
            actor=Actor.operator("test"),
            correlation_id=uuid7(),
        )
        # The notice travels over PostgreSQL; wait for it, then the key must be refused.
        for _ in range(250):
            if await _cached(api_deps, key["api_key"]) is None:
                break
            await asyncio.sleep(0.02)
        assert await _cached(api_deps, key["api_key"]) is None
        assert_problem(await client.get("/v1/tenant", headers=_bearer(key)), 401, "unauthenticated")

    async def test_an_entry_never_outlives_the_key(self, client, api_deps, tenant) -> None:
        issued = await issue_api_key(
            tenant.tenant_id,
            name="short-lived",
            expires_at=datetime.now(UTC) + timedelta(seconds=1),
            deps=api_deps.tenants,
            actor=Actor.operator("test"),
            correlation_id=uuid7(),
        )
        key = {"id": str(issued.key_id), "api_key": issued.api_key}
        await _until_listening(client, api_deps, key)
        await asyncio.sleep(1.1)
        assert_problem(await client.get("/v1/tenant", headers=_bearer(key)), 401, "unauthenticated")
