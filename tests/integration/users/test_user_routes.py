"""User management over HTTP: roles, tenant isolation, actors on events, the audit trail."""

import uuid

import pytest

from metachat.tenants.users import model
from tests.integration.api.conftest import assert_problem
from tests.integration.users.conftest import PASSWORD, login


def _new(role: str = "agent") -> dict[str, str]:
    return {
        "email": f"{role}-{uuid.uuid4().hex[:8]}@example.com",
        "password": PASSWORD,
        "role": role,
    }


class TestManagement:
    async def test_an_owner_creates_lists_promotes_and_deactivates(
        self, client, tenant, new_user
    ) -> None:
        owner = await new_user(tenant)
        created = await client.post("/v1/users", json=_new("agent"), headers=owner.auth)
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        listed = await client.get("/v1/users", headers=owner.auth)
        assert user_id in {u["id"] for u in listed.json()}
        promoted = await client.patch(
            f"/v1/users/{user_id}", json={"role": "admin"}, headers=owner.auth
        )
        assert promoted.json()["role"] == "admin"
        gone = await client.delete(f"/v1/users/{user_id}", headers=owner.auth)
        assert gone.status_code == 204
        shown = await client.get(f"/v1/users/{user_id}", headers=owner.auth)
        assert shown.json()["active"] is False

    async def test_an_api_key_with_tenant_admin_creates_an_owner(self, client, tenant) -> None:
        created = await client.post("/v1/users", json=_new("owner"), headers=tenant.auth)
        assert created.status_code == 201, created.text
        assert created.json()["role"] == "owner"

    async def test_the_email_is_taken_once_regardless_of_case(
        self, client, tenant, new_user
    ) -> None:
        owner = await new_user(tenant)
        body = {**_new(), "email": owner.email.upper()}
        assert_problem(
            await client.post("/v1/users", json=body, headers=owner.auth), 409, "conflict"
        )

    async def test_a_short_password_is_refused(self, client, tenant) -> None:
        body = {**_new(), "password": "short"}
        response = await client.post("/v1/users", json=body, headers=tenant.auth)
        assert response.status_code in {400, 422}, response.text


class TestRoles:
    async def test_an_agent_reads_but_manages_no_one(self, client, tenant, new_user) -> None:
        agent = await new_user(tenant, "agent")
        assert (await client.get("/v1/users", headers=agent.auth)).status_code == 200
        refused = await client.post("/v1/users", json=_new(), headers=agent.auth)
        assert_problem(refused, 403, "forbidden")
        assert_problem(await client.get("/v1/audit", headers=agent.auth), 403, "forbidden")
        me = await client.get("/v1/me", headers=agent.auth)
        assert set(me.json()["scopes"]) == model.AGENT_SCOPES

    async def test_an_admin_cannot_create_or_promote_owners(self, client, tenant, new_user) -> None:
        admin = await new_user(tenant, "admin")
        agent = await new_user(tenant, "agent")
        owner = await client.post("/v1/users", json=_new("owner"), headers=admin.auth)
        assert_problem(owner, 403, "forbidden")
        promote = await client.patch(
            f"/v1/users/{agent.user_id}", json={"role": "owner"}, headers=admin.auth
        )
        assert_problem(promote, 403, "forbidden")
        made = await client.post("/v1/users", json=_new("admin"), headers=admin.auth)
        assert made.status_code == 201, made.text

    async def test_the_last_owner_stays(self, client, new_tenant, new_user) -> None:
        tenant = await new_tenant("Solo")
        owner = await new_user(tenant)
        demote = await client.patch(
            f"/v1/users/{owner.user_id}", json={"role": "admin"}, headers=owner.auth
        )
        assert_problem(demote, 409, "conflict")
        leave = await client.delete(f"/v1/users/{owner.user_id}", headers=owner.auth)
        assert_problem(leave, 409, "conflict")

    async def test_a_demotion_takes_effect_at_once(self, client, tenant, new_user) -> None:
        owner = await new_user(tenant)
        admin = await new_user(tenant, "admin")
        assert (await client.get("/v1/audit", headers=admin.auth)).status_code == 200
        await client.patch(f"/v1/users/{admin.user_id}", json={"role": "agent"}, headers=owner.auth)
        assert_problem(await client.get("/v1/audit", headers=admin.auth), 403, "forbidden")


class TestIsolation:
    @pytest.mark.parametrize(
        "call", [("GET", None), ("PATCH", {"role": "admin"}), ("DELETE", None)]
    )
    async def test_another_tenants_user_is_not_found(
        self, client, tenant, other_tenant, new_user, call
    ) -> None:
        method, body = call
        mine = await new_user(tenant)
        theirs = await new_user(other_tenant, "agent")
        response = await client.request(
            method, f"/v1/users/{theirs.user_id}", json=body, headers=mine.auth
        )
        assert_problem(response, 404, "not_found")
        with_key = await client.request(
            method, f"/v1/users/{theirs.user_id}", json=body, headers=tenant.auth
        )
        assert_problem(with_key, 404, "not_found")

    async def test_a_user_logs_in_to_their_own_tenant_only(
        self, client, tenant, other_tenant, new_user
    ) -> None:
        theirs = await new_user(other_tenant)
        assert_problem(await login(client, tenant.tenant_id, theirs.email), 401, "unauthenticated")


class TestAudit:
    async def test_lists_administrative_events_newest_first_with_actors(
        self, client, new_tenant, new_user
    ) -> None:
        tenant = await new_tenant("Audited")
        owner = await new_user(tenant)
        created = await client.post("/v1/users", json=_new(), headers=owner.auth)
        user_id = created.json()["id"]
        await client.patch(f"/v1/users/{user_id}", json={"role": "admin"}, headers=owner.auth)
        await client.post("/v1/api-keys", json={"name": "ci"}, headers=owner.auth)
        page = (await client.get("/v1/audit", headers=owner.auth)).json()
        types = [item["type"] for item in page["items"]]
        assert types == [
            "tenants.api_key_issued",
            "tenants.user_role_changed",
            "tenants.user_created",
            "tenants.user_created",
            "tenants.api_key_issued",
            "tenants.tenant_created",
        ]
        by_user = {"kind": "user", "id": str(owner.user_id)}
        assert [item["actor"] for item in page["items"][:3]] == [by_user] * 3
        assert page["items"][3]["actor"] == {"kind": "operator", "id": "test"}
        assert page["items"][1]["payload"]["previous_role"] == "agent"
        assert all(item["correlation_id"] and item["occurred_at"] for item in page["items"])
        assert "password" not in str(page)

    async def test_pages_by_cursor(self, client, new_tenant, new_user) -> None:
        tenant = await new_tenant("Paged")
        owner = await new_user(tenant)
        seen: list[int] = []
        cursor = None
        while True:
            params = {"limit": 2} | ({"before": cursor} if cursor else {})
            page = (await client.get("/v1/audit", params=params, headers=owner.auth)).json()
            seen += [item["position"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 3  # tenant created, key issued, owner created
        assert seen == sorted(seen, reverse=True)

    async def test_shows_only_the_callers_tenant(self, client, tenant, other_tenant) -> None:
        page = (await client.get("/v1/audit", headers=other_tenant.auth)).json()
        assert str(tenant.key_id) not in str(page)
