"""The assistant settings over HTTP: defaults, replace, providers' keys sealed at rest, isolation."""

from typing import Any

from sqlalchemy import text

from metachat.bootstrap import Deps
from metachat.tenants.assistant.handlers import AssistantDeps, load_assistant
from tests.integration.api.conftest import Tenant, assert_problem

SECRET = "sk-test-0123456789abcdefWXYZ"  # noqa: S105 - a fake provider key


def _openai(**changes: Any) -> dict[str, Any]:
    return {"primary": {"kind": "openai", "model": "gpt-4o-mini"}, **changes}


async def _store_key(client: Any, tenant: Tenant, provider: str = "openai") -> Any:
    return await client.put(
        "/v1/assistant/keys", json={"provider": provider, "api_key": SECRET}, headers=tenant.auth
    )


class TestReadSettings:
    async def test_a_new_tenant_gets_the_offline_defaults(self, client, tenant) -> None:
        response = await client.get("/v1/assistant", headers=tenant.auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["keys"] == []
        assert body["settings"]["primary"]["kind"] == "offline"
        assert body["settings"]["confidence"]["mode"] == "standard"
        assert body["settings"]["handoff_message"]


class TestReplaceSettings:
    async def test_replaces_and_answers_the_new_settings(self, client, tenant) -> None:
        body = {"brand_name": "Acme", "tone": "warm", "burst_window_ms": 500}
        response = await client.put("/v1/assistant", json=body, headers=tenant.auth)
        assert response.status_code == 200, response.text
        again = (await client.get("/v1/assistant", headers=tenant.auth)).json()["settings"]
        assert (again["brand_name"], again["tone"], again["burst_window_ms"]) == (
            "Acme",
            "warm",
            500,
        )

    async def test_a_model_without_its_key_is_refused_with_the_fix(self, client, tenant) -> None:
        response = await client.put("/v1/assistant", json=_openai(), headers=tenant.auth)
        body = assert_problem(response, 422, "validation_error")
        assert "/v1/assistant/keys" in body["detail"]

    async def test_out_of_range_and_unknown_fields_are_refused(self, client, tenant) -> None:
        hot = {"primary": {"kind": "offline", "model": "offline", "temperature": 9}}
        for body in (hot, {"no_such_setting": True}):
            response = await client.put("/v1/assistant", json=body, headers=tenant.auth)
            assert response.status_code == 422, response.text

    async def test_an_openai_compatible_server_needs_its_base_url(self, client, tenant) -> None:
        body = {"primary": {"kind": "openai_compatible", "model": "m"}}  # a key is optional
        response = await client.put("/v1/assistant", json=body, headers=tenant.auth)
        assert_problem(response, 422, "validation_error")


class TestProviderKeys:
    async def test_a_key_is_shown_as_its_last_four_only(self, client, tenant) -> None:
        response = await _store_key(client, tenant)
        assert response.status_code == 200, response.text
        assert response.json()["keys"] == [{"provider": "openai", "last_four": "WXYZ"}]
        assert SECRET not in response.text
        read = await client.get("/v1/assistant", headers=tenant.auth)
        assert SECRET not in read.text

    async def test_the_key_is_sealed_at_rest_and_in_no_event(
        self, client, api_deps: Deps, tenant
    ) -> None:
        await _store_key(client, tenant)
        async with api_deps.engine.connect() as conn:
            sealed = await conn.scalar(
                text("SELECT sealed FROM tenants.provider_keys WHERE tenant_id = :t"),
                {"t": tenant.tenant_id},
            )
            in_events = await conn.scalar(
                text("""SELECT count(*) FROM eventstore.events
                        WHERE tenant_id = :t AND payload::text LIKE :s"""),
                {"t": tenant.tenant_id, "s": f"%{SECRET[-10:]}%"},
            )
        assert SECRET.encode() not in bytes(sealed)
        assert in_events == 0

    async def test_the_reply_pipeline_opens_the_key_of_a_model_in_its_chain(
        self, client, api_deps: Deps, tenant
    ) -> None:
        await _store_key(client, tenant)
        deps = AssistantDeps(store=api_deps.store, box=api_deps.secrets)
        assert (await load_assistant(deps, tenant.tenant_id)).api_keys == {}  # not in the chain
        assert (await client.put("/v1/assistant", json=_openai(), headers=tenant.auth)).is_success
        loaded = await load_assistant(deps, tenant.tenant_id)
        assert loaded.api_keys == {"openai": SECRET}
        assert SECRET not in repr(loaded)

    async def test_a_key_in_use_cannot_be_deleted_until_the_chain_changes(
        self, client, tenant
    ) -> None:
        await _store_key(client, tenant)
        await client.put("/v1/assistant", json=_openai(), headers=tenant.auth)
        refused = await client.delete("/v1/assistant/keys?provider=openai", headers=tenant.auth)
        assert_problem(refused, 422, "validation_error")
        await client.put("/v1/assistant", json={}, headers=tenant.auth)  # back to the defaults
        for _ in range(2):  # deleting twice is fine
            gone = await client.delete("/v1/assistant/keys?provider=openai", headers=tenant.auth)
            assert gone.status_code == 204, gone.text
        assert (await client.get("/v1/assistant", headers=tenant.auth)).json()["keys"] == []

    async def test_changes_are_in_the_audit_trail_without_the_key(self, client, tenant) -> None:
        await _store_key(client, tenant)
        audit = await client.get("/v1/audit", headers=tenant.auth)
        assert "tenants.provider_key_set" in {e["type"] for e in audit.json()["items"]}
        assert SECRET not in audit.text


class TestIsolation:
    async def test_another_tenant_sees_only_its_own_settings(
        self, client, tenant, other_tenant
    ) -> None:
        await _store_key(client, tenant)
        await client.put("/v1/assistant", json={"brand_name": "Acme"}, headers=tenant.auth)
        theirs = (await client.get("/v1/assistant", headers=other_tenant.auth)).json()
        assert theirs["keys"] == []
        assert theirs["settings"]["brand_name"] == ""
