"""HTTP routes of the assistant: its settings, providers' keys, HTTP tools and MCP servers.

A stored key is never answered back, only its last four characters; a tool's secret and an MCP
server's credentials never at all. Reading needs `tenant:read`; every change needs
`tenant:admin` and is in the audit trail. No route registers an MCP server: operators do, with
`metachat mcp register`.
"""

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from metachat.tenants.assistant import handlers, tools
from metachat.tenants.assistant.handlers import AssistantDeps, AssistantView
from metachat.tenants.commands import AssistantSettings, HttpTool, ProviderKind, ServerName
from metachat.tenants.handlers import Principal
from metachat.tenants.mcp import registered_servers

READ = {"scope": "tenant:read"}
ADMIN = {"scope": "tenant:admin"}


class ProviderKeyOut(msgspec.Struct, frozen=True, kw_only=True):
    """A provider with a stored key: never the key itself."""

    provider: str
    last_four: str


class McpServerOut(msgspec.Struct, frozen=True, kw_only=True):
    """An MCP server: its name and the credentials (names only) a tenant gives it."""

    server: str
    variables: list[str]


class AssistantOut(msgspec.Struct, frozen=True, kw_only=True):
    """The assistant's settings, the providers that have a key, its tools (never a secret)."""

    settings: AssistantSettings
    keys: list[ProviderKeyOut]
    http_tools: list[HttpTool]
    mcp_servers: list[McpServerOut]


_Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=tools.MAX_SECRET_LENGTH)]


class HttpToolIn(HttpTool, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An HTTP tool, with the bearer token or header value its auth needs (stored sealed)."""

    secret: _Secret | None = None


class McpServerIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Enable a registered MCP server with the credentials its registration declares."""

    server: ServerName
    credentials: dict[str, _Secret] = msgspec.field(default_factory=dict)


class ProviderKeyIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A provider's API key to store (encrypted; shown again only as its last four)."""

    provider: ProviderKind
    api_key: Annotated[
        str, msgspec.Meta(min_length=1, max_length=handlers.MAX_KEY_LENGTH, examples=["sk-abc"])
    ]


def _out(view: AssistantView) -> AssistantOut:
    keys = [ProviderKeyOut(provider=p, last_four=last) for p, last in view.keys.items()]
    servers = [McpServerOut(server=s, variables=v) for s, v in view.mcp_servers.items()]
    return AssistantOut(
        settings=view.settings, keys=keys, http_tools=view.http_tools, mcp_servers=servers
    )


class AssistantController(Controller):
    """The tenant's assistant: voice, model chain, limits, escalation, and providers' keys."""

    path = "/assistant"
    tags = ["assistant"]  # noqa: RUF012 - Litestar's layer attribute

    @get("/", opt=READ, summary="The assistant's settings")
    async def get_settings(
        self, principal: NamedDependency[Principal], assistant_deps: NamedDependency[AssistantDeps]
    ) -> AssistantOut:
        """Return the settings (the defaults until changed) and which providers have a key."""
        return _out(await handlers.get_assistant(assistant_deps.store, principal.tenant_id))

    @put("/", opt=ADMIN, summary="Replace the assistant's settings")
    async def put_settings(
        self,
        data: JSONBody[AssistantSettings],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> AssistantOut:
        """Replace every setting; each model of the chain needs its provider's key first."""
        view = await handlers.configure_assistant(
            principal.tenant_id,
            data,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return _out(view)

    @put("/keys", opt=ADMIN, summary="Store a provider's API key")
    async def put_key(
        self,
        data: JSONBody[ProviderKeyIn],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> AssistantOut:
        """Store or replace the key, encrypted at rest; it is never answered back."""
        view = await handlers.set_provider_key(
            principal.tenant_id,
            data.provider,
            data.api_key,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return _out(view)

    @delete("/keys", opt=ADMIN, status_code=204, summary="Delete a provider's API key")
    async def delete_key(
        self,
        provider: FromQuery[ProviderKind],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> None:
        """Forget the key; refused while a model of the chain needs it, a no-op when absent."""
        await handlers.remove_provider_key(
            principal.tenant_id,
            provider,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )


class AssistantToolsController(Controller):
    """The tenant's HTTP tools and the MCP servers it uses."""

    path = "/assistant"
    tags = ["assistant"]  # noqa: RUF012 - Litestar's layer attribute

    @put("/tools", opt=ADMIN, summary="Add or replace an HTTP tool")
    async def put_tool(
        self,
        data: JSONBody[HttpToolIn],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> AssistantOut:
        """Store the tool; its secret is sealed and never answered back."""
        fields = msgspec.structs.asdict(data)
        secret = fields.pop("secret")
        view = await tools.configure_http_tool(
            principal.tenant_id,
            HttpTool(**fields),
            secret,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return _out(view)

    @delete("/tools", opt=ADMIN, status_code=204, summary="Delete an HTTP tool")
    async def delete_tool(
        self,
        name: FromQuery[str],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> None:
        """Forget the tool and its secret; a no-op when absent."""
        await tools.remove_http_tool(
            principal.tenant_id,
            name,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )

    @get("/mcp-servers", opt=READ, summary="The MCP servers an operator made available")
    async def available_servers(
        self, assistant_deps: NamedDependency[AssistantDeps]
    ) -> list[McpServerOut]:
        """Every registered server's name and the credentials it needs (never its command)."""
        servers = await registered_servers(assistant_deps.registry)
        return [
            McpServerOut(server=name, variables=list(server.env_from_tenant))
            for name, server in sorted(servers.items())
        ]

    @put("/mcp", opt=ADMIN, summary="Enable an MCP server")
    async def enable_server(
        self,
        data: JSONBody[McpServerIn],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> AssistantOut:
        """Let the assistant use a registered server; its credentials are sealed."""
        view = await tools.enable_mcp_server(
            principal.tenant_id,
            data.server,
            data.credentials,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return _out(view)

    @delete("/mcp", opt=ADMIN, status_code=204, summary="Disable an MCP server")
    async def disable_server(
        self,
        server: FromQuery[str],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> None:
        """Stop using the server and delete the credentials; a no-op when not enabled."""
        await tools.disable_mcp_server(
            principal.tenant_id,
            server,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )


ROUTES = (AssistantController, AssistantToolsController)
