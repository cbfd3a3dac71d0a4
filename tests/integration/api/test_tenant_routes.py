"""The tenant and API key routes: happy paths, errors as problem details, tenant isolation."""

import uuid
from datetime import UTC, datetime, timedelta

from metachat.kernel.ids import uuid7
from metachat.tenants.commands import SCOPES
from tests.integration.api.conftest import Tenant, assert_problem


class TestGetTenant:
    async def test_returns_the_callers_tenant_right_after_creation(
        self, client, new_tenant
    ) -> None:
        tenant: Tenant = await new_tenant("Initech")
        response = await client.get("/v1/tenant", headers=tenant.auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == str(tenant.tenant_id)
        assert body["name"] == "Initech"
        assert body["active_keys"] == 1
        assert datetime.fromisoformat(body["created_at"]) <= datetime.now(UTC)

    async def test_counts_only_active_keys(self, client, tenant) -> None:
        created = await client.post("/v1/api-keys", headers=tenant.auth, json={"name": "second"})
        assert (await client.get("/v1/tenant", headers=tenant.auth)).json()["active_keys"] == 2
        await client.delete(f"/v1/api-keys/{created.json()['id']}", headers=tenant.auth)
        assert (await client.get("/v1/tenant", headers=tenant.auth)).json()["active_keys"] == 1


class TestListApiKeys:
    async def test_lists_keys_without_secrets(self, client, tenant) -> None:
        response = await client.get("/v1/api-keys", headers=tenant.auth)
        assert response.status_code == 200, response.text
        (key,) = response.json()
        assert set(key) == {
            "id",
            "name",
            "prefix",
            "last_four",
            "scopes",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        }
        assert key["id"] == str(tenant.key_id)
        assert key["prefix"] == tenant.api_key.split("_")[1]
        assert key["last_four"] == tenant.api_key[-4:]
        assert sorted(key["scopes"]) == sorted(SCOPES)
        assert key["revoked_at"] is None
        assert key["last_used_at"] is not None  # this very request used it
        assert tenant.api_key not in response.text

    async def test_shows_revoked_keys_with_their_revocation_time(self, client, tenant) -> None:
        created = (
            await client.post("/v1/api-keys", headers=tenant.auth, json={"name": "old"})
        ).json()
        await client.delete(f"/v1/api-keys/{created['id']}", headers=tenant.auth)
        keys = {k["id"]: k for k in (await client.get("/v1/api-keys", headers=tenant.auth)).json()}
        assert keys[created["id"]]["revoked_at"] is not None
        assert keys[str(tenant.key_id)]["revoked_at"] is None

    async def test_never_lists_another_tenants_keys(self, client, tenant, other_tenant) -> None:
        mine = {k["id"] for k in (await client.get("/v1/api-keys", headers=tenant.auth)).json()}
        theirs = {
            k["id"] for k in (await client.get("/v1/api-keys", headers=other_tenant.auth)).json()
        }
        assert mine == {str(tenant.key_id)}
        assert theirs == {str(other_tenant.key_id)}


class TestCreateApiKey:
    async def test_returns_the_plaintext_once_and_it_authenticates(self, client, tenant) -> None:
        expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        response = await client.post(
            "/v1/api-keys",
            headers=tenant.auth,
            json={"name": "reporting", "scopes": ["tenant:read"], "expires_at": expires},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == "reporting"
        assert body["scopes"] == ["tenant:read"]
        assert body["tenant_id"] == str(tenant.tenant_id)
        assert datetime.fromisoformat(body["expires_at"]) == datetime.fromisoformat(expires)
        new_auth = {"Authorization": f"Bearer {body['api_key']}"}
        assert (await client.get("/v1/tenant", headers=new_auth)).json()["id"] == str(
            tenant.tenant_id
        )
        listed = (await client.get("/v1/api-keys", headers=tenant.auth)).text
        assert body["api_key"] not in listed

    async def test_defaults_to_every_scope(self, client, tenant) -> None:
        body = (await client.post("/v1/api-keys", headers=tenant.auth, json={"name": "all"})).json()
        assert sorted(body["scopes"]) == sorted(SCOPES)

    async def test_rejects_an_unknown_scope(self, client, tenant) -> None:
        response = await client.post(
            "/v1/api-keys", headers=tenant.auth, json={"name": "x", "scopes": ["root"]}
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["field"] == "scopes"

    async def test_rejects_bad_fields_naming_each_of_them(self, client, tenant) -> None:
        response = await client.post(
            "/v1/api-keys", headers=tenant.auth, json={"name": "", "extra": 1}
        )
        body = assert_problem(response, 422, "invalid_request")
        assert body["errors"], body
        assert all({"field", "message"} <= set(e) for e in body["errors"])

    async def test_rejects_a_wrong_type_naming_the_field(self, client, tenant) -> None:
        response = await client.post("/v1/api-keys", headers=tenant.auth, json={"name": 5})
        body = assert_problem(response, 422, "invalid_request")
        assert [e["field"] for e in body["errors"]] == ["name"]

    async def test_rejects_an_expiry_without_timezone(self, client, tenant) -> None:
        response = await client.post(
            "/v1/api-keys",
            headers=tenant.auth,
            json={"name": "x", "expires_at": "2999-01-01T00:00:00"},
        )
        body = assert_problem(response, 422, "invalid_request")
        assert [e["field"] for e in body["errors"]] == ["expires_at"]

    async def test_rejects_an_expiry_in_the_past(self, client, tenant) -> None:
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        response = await client.post(
            "/v1/api-keys", headers=tenant.auth, json={"name": "x", "expires_at": past}
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["field"] == "expires_at"

    async def test_rejects_malformed_json(self, client, tenant) -> None:
        response = await client.post(
            "/v1/api-keys",
            headers={**tenant.auth, "Content-Type": "application/json"},
            content=b"{not json",
        )
        assert_problem(response, 400, "bad_request")


class TestRotateApiKey:
    async def test_issues_a_new_key_and_the_old_one_stops_working(self, client, tenant) -> None:
        old = (
            await client.post(
                "/v1/api-keys",
                headers=tenant.auth,
                json={"name": "deploy", "scopes": ["tenant:read"]},
            )
        ).json()
        response = await client.post(f"/v1/api-keys/{old['id']}/rotate", headers=tenant.auth)
        assert response.status_code == 201, response.text
        new = response.json()
        assert new["id"] != old["id"]
        assert (new["name"], new["scopes"]) == ("deploy", ["tenant:read"])
        old_auth = {"Authorization": f"Bearer {old['api_key']}"}
        assert_problem(await client.get("/v1/tenant", headers=old_auth), 401, "unauthenticated")
        new_auth = {"Authorization": f"Bearer {new['api_key']}"}
        assert (await client.get("/v1/tenant", headers=new_auth)).status_code == 200

    async def test_another_tenants_key_is_not_found(self, client, tenant, other_tenant) -> None:
        response = await client.post(
            f"/v1/api-keys/{other_tenant.key_id}/rotate", headers=tenant.auth
        )
        assert_problem(response, 404, "not_found")
        other_auth = other_tenant.auth
        assert (await client.get("/v1/tenant", headers=other_auth)).status_code == 200

    async def test_an_unknown_key_is_not_found(self, client, tenant) -> None:
        response = await client.post(f"/v1/api-keys/{uuid7()}/rotate", headers=tenant.auth)
        assert_problem(response, 404, "not_found")

    async def test_a_revoked_key_cannot_be_rotated(self, client, tenant) -> None:
        key = (await client.post("/v1/api-keys", headers=tenant.auth, json={"name": "x"})).json()
        await client.delete(f"/v1/api-keys/{key['id']}", headers=tenant.auth)
        response = await client.post(f"/v1/api-keys/{key['id']}/rotate", headers=tenant.auth)
        assert_problem(response, 404, "not_found")


class TestRevokeApiKey:
    async def test_revoked_key_stops_working_and_revoking_twice_is_fine(
        self, client, tenant
    ) -> None:
        key = (await client.post("/v1/api-keys", headers=tenant.auth, json={"name": "temp"})).json()
        first = await client.delete(f"/v1/api-keys/{key['id']}", headers=tenant.auth)
        assert first.status_code == 204, first.text
        assert first.content == b""
        key_auth = {"Authorization": f"Bearer {key['api_key']}"}
        assert_problem(await client.get("/v1/tenant", headers=key_auth), 401, "unauthenticated")
        second = await client.delete(f"/v1/api-keys/{key['id']}", headers=tenant.auth)
        assert second.status_code == 204, second.text

    async def test_another_tenants_key_is_not_found(self, client, tenant, other_tenant) -> None:
        response = await client.delete(f"/v1/api-keys/{other_tenant.key_id}", headers=tenant.auth)
        assert_problem(response, 404, "not_found")
        assert (await client.get("/v1/tenant", headers=other_tenant.auth)).status_code == 200

    async def test_an_unknown_key_is_not_found(self, client, tenant) -> None:
        response = await client.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=tenant.auth)
        assert_problem(response, 404, "not_found")
