"""Tools over HTTP: HTTP tools (secrets sealed, never shown), MCP servers enabled, never registered."""

from typing import Any

from sqlalchemy import text

from metachat.bootstrap import Deps
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.tenants import mcp
from metachat.tenants.assistant.handlers import AssistantDeps, load_assistant
from metachat.tenants.commands import RegisterMcpServer
from tests.integration.api.conftest import Tenant, assert_problem

TOKEN = "tool-token-5f0e77aa19"  # noqa: S105 - a fake token
TOOL = {
    "name": "order_status",
    "description": "Look up an order by its id.",
    "url": "https://shop.example.com/orders/{order_id}",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
    "auth": "bearer",
}


async def _put(client: Any, tenant: Tenant, body: dict[str, Any]) -> Any:
    return await client.put("/v1/assistant/tools", json=body, headers=tenant.auth)


async def _register(deps: Deps, name: str) -> None:
    server = RegisterMcpServer(name=name, command="/bin/true", env_from_tenant=("SHOP_TOKEN",))
    await mcp.register_server(deps.store, server, actor=Actor.operator(), correlation_id=uuid7())


class TestHttpTools:
    async def test_a_tool_is_listed_without_its_secret_and_sealed_at_rest(
        self, client, api_deps: Deps, tenant
    ) -> None:
        response = await _put(client, tenant, {**TOOL, "secret": TOKEN})
        assert response.status_code == 200, response.text
        listed = await client.get("/v1/assistant", headers=tenant.auth)
        assert [t["name"] for t in listed.json()["http_tools"]] == ["order_status"]
        assert TOKEN not in response.text + listed.text
        async with api_deps.engine.connect() as conn:
            sealed = await conn.scalar(
                text("SELECT sealed FROM tenants.tool_secrets WHERE tenant_id = :t"),
                {"t": tenant.tenant_id},
            )
            events = await conn.scalar(
                text(
                    "SELECT string_agg(payload::text, '') FROM eventstore.events WHERE tenant_id = :t"
                ),
                {"t": tenant.tenant_id},
            )
        assert TOKEN.encode() not in bytes(sealed)
        assert TOKEN not in events
        loaded = await load_assistant(
            AssistantDeps(store=api_deps.store, box=api_deps.secrets), tenant.tenant_id
        )
        assert loaded.http_tools[0].secret == TOKEN
        assert TOKEN not in repr(loaded)

    async def test_invalid_tools_are_refused(self, client, tenant) -> None:
        for body, status in (
            (TOOL, 422),  # bearer without a secret
            ({**TOOL, "parameters": {"type": "string"}, "secret": TOKEN}, 422),
            ({**TOOL, "timeout_seconds": 60, "secret": TOKEN}, 400),
            ({**TOOL, "name": "search_knowledge_base", "secret": TOKEN}, 422),
        ):
            response = await _put(client, tenant, body)
            assert response.status_code in {status, 400, 422}, response.text
            assert response.status_code != 200

    async def test_deleted_with_its_secret(self, client, api_deps: Deps, tenant) -> None:
        await _put(client, tenant, {**TOOL, "secret": TOKEN})
        response = await client.delete("/v1/assistant/tools?name=order_status", headers=tenant.auth)
        assert response.status_code == 204
        async with api_deps.engine.connect() as conn:
            left = await conn.scalar(
                text("SELECT count(*) FROM tenants.tool_secrets WHERE tenant_id = :t"),
                {"t": tenant.tenant_id},
            )
        assert left == 0


class TestMcpServers:
    async def test_no_route_registers_a_server(self, client, tenant) -> None:
        document = (await client.get("/schema/openapi.json")).json()
        mcp_routes = {
            (method, path)
            for path, operations in document["paths"].items()
            for method in operations
            if "mcp" in path
        }
        assert mcp_routes == {
            ("get", "/v1/assistant/mcp-servers"),
            ("put", "/v1/assistant/mcp"),
            ("delete", "/v1/assistant/mcp"),
        }
        # The enabling body cannot carry a command, and an unregistered name is not found.
        body = {"server": "evil", "command": "/bin/sh", "credentials": {}}
        response = await client.put("/v1/assistant/mcp", json=body, headers=tenant.auth)
        assert_problem(response, 422, "invalid_request")
        response = await client.put(
            "/v1/assistant/mcp", json={"server": "evil"}, headers=tenant.auth
        )
        assert_problem(response, 404, "not_found")

    async def test_enabled_with_the_declared_credentials_only(
        self, client, api_deps: Deps, tenant, other_tenant
    ) -> None:
        name = f"shop-{uuid7().hex[-6:]}"
        await _register(api_deps, name)
        available = await client.get("/v1/assistant/mcp-servers", headers=tenant.auth)
        assert {"server": name, "variables": ["SHOP_TOKEN"]} in available.json()
        assert "/bin/true" not in available.text
        wrong = {"server": name, "credentials": {"OTHER": "x"}}
        response = await client.put("/v1/assistant/mcp", json=wrong, headers=tenant.auth)
        assert_problem(response, 422, "validation_error")
        right = {"server": name, "credentials": {"SHOP_TOKEN": TOKEN}}
        response = await client.put("/v1/assistant/mcp", json=right, headers=tenant.auth)
        assert response.status_code == 200, response.text
        assert response.json()["mcp_servers"] == [{"server": name, "variables": ["SHOP_TOKEN"]}]
        assert TOKEN not in response.text
        deps = AssistantDeps(store=api_deps.store, box=api_deps.secrets)
        (mine,) = (await load_assistant(deps, tenant.tenant_id)).mcp_servers
        assert mine.env == {"SHOP_TOKEN": TOKEN}
        assert (await load_assistant(deps, other_tenant.tenant_id)).mcp_servers == ()
