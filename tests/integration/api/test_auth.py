"""Bearer API key authentication and per-route scopes."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants.handlers import issue_api_key
from tests.integration.api.conftest import Tenant, assert_problem

ROUTES = [
    ("GET", "/v1/tenant"),
    ("GET", "/v1/api-keys"),
    ("POST", "/v1/api-keys"),
    ("POST", "/v1/api-keys/{key_id}/rotate"),
    ("DELETE", "/v1/api-keys/{key_id}"),
]


async def _call(client, method: str, path: str, headers: dict[str, str], key_id: str) -> Any:
    json = {"name": "x"} if (method, path) == ("POST", "/v1/api-keys") else None
    return await client.request(method, path.format(key_id=key_id), headers=headers, json=json)


class TestAuthentication:
    @pytest.mark.parametrize(
        "header",
        [
            None,
            "Bearer",
            "Basic dXNlcjpwYXNz",
            "Bearer not-a-key",
            "Bearer mck_short_secret",
            "Bearer mck_abcdefghijkl_wrongsecretwrongsecretwrongsecretwrongsec",
        ],
    )
    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_refuses_missing_or_malformed_keys(
        self, client, tenant, header, method, path
    ) -> None:
        headers = {"Authorization": header} if header else {}
        response = await _call(client, method, path, headers, str(tenant.key_id))
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_refuses_a_key_with_a_valid_prefix_and_a_wrong_secret(
        self, client, tenant
    ) -> None:
        forged = tenant.api_key[:-4] + ("AAAA" if tenant.api_key[-4:] != "AAAA" else "BBBB")
        response = await client.get("/v1/tenant", headers={"Authorization": f"Bearer {forged}"})
        assert_problem(response, 401, "unauthenticated")

    async def test_refuses_a_revoked_key(self, client, tenant) -> None:
        key = (await client.post("/v1/api-keys", headers=tenant.auth, json={"name": "r"})).json()
        await client.delete(f"/v1/api-keys/{key['id']}", headers=tenant.auth)
        response = await client.get(
            "/v1/tenant", headers={"Authorization": f"Bearer {key['api_key']}"}
        )
        body = assert_problem(response, 401, "unauthenticated")
        assert "revoked" not in body["detail"]  # never says why a key is refused

    async def test_refuses_an_expired_key(self, client, api_deps, tenant) -> None:
        expired = await issue_api_key(
            tenant.tenant_id,
            name="expired",
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
            deps=api_deps.tenants,
            actor=Actor.operator("test"),
            correlation_id=uuid7(),
        )
        response = await client.get(
            "/v1/tenant", headers={"Authorization": f"Bearer {expired.api_key}"}
        )
        assert_problem(response, 401, "unauthenticated")

    async def test_accepts_the_scheme_in_any_case(self, client, tenant) -> None:
        response = await client.get(
            "/v1/tenant", headers={"Authorization": f"bearer {tenant.api_key}"}
        )
        assert response.status_code == 200


class TestScopes:
    async def _key_with(self, client, tenant: Tenant, *scopes: str) -> dict[str, str]:
        created = await client.post(
            "/v1/api-keys", headers=tenant.auth, json={"name": "scoped", "scopes": list(scopes)}
        )
        assert created.status_code == 201, created.text
        return {"Authorization": f"Bearer {created.json()['api_key']}"}

    @pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r[0] != "GET"])
    async def test_writes_need_keys_manage(self, client, tenant, method, path) -> None:
        read_only = await self._key_with(client, tenant, "tenant:read")
        response = await _call(client, method, path, read_only, str(tenant.key_id))
        body = assert_problem(response, 403, "forbidden")
        assert "keys:manage" in body["detail"]
        assert (await client.get("/v1/tenant", headers=tenant.auth)).status_code == 200

    @pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r[0] == "GET"])
    async def test_reads_need_tenant_read(self, client, tenant, method, path) -> None:
        managing = await self._key_with(client, tenant, "keys:manage")
        response = await _call(client, method, path, managing, str(tenant.key_id))
        assert_problem(response, 403, "forbidden")

    async def test_a_key_with_the_scope_is_let_through(self, client, tenant) -> None:
        managing = await self._key_with(client, tenant, "keys:manage")
        response = await client.post("/v1/api-keys", headers=managing, json={"name": "child"})
        assert response.status_code == 201, response.text
