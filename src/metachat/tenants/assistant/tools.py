"""Use cases of the tenant's tools: HTTP tools, and the MCP servers it enables.

Secrets (an HTTP tool's token or header value, an MCP server's credentials) are sealed into
`tenants.tool_secrets` in the transaction of their event; the event records only that a secret
exists, or the credentials' names. Enabling an MCP server checks the operator's registry: a
tenant can only name a registered server and give the variables it declares, never a command.
"""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.envelope import Recorded
from metachat.kernel.actors import Actor
from metachat.kernel.errors import NotFoundError, ValidationError
from metachat.tenants.assistant.handlers import AssistantDeps, AssistantView, execute, view
from metachat.tenants.assistant.secrets import HTTP_SECRET, replace_secrets
from metachat.tenants.commands import (
    ConfigureHttpTool,
    DisableMcpServer,
    EnableMcpServer,
    HttpTool,
    RemoveHttpTool,
)
from metachat.tenants.mcp import registered_servers

MAX_SECRET_LENGTH = 2_000


def _clean(value: str, field: str) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > MAX_SECRET_LENGTH or any(c in cleaned for c in "\r\n\0"):
        raise ValidationError(
            f"{field} must be 1 to {MAX_SECRET_LENGTH} characters on one line", field=field
        )
    return cleaned


def _at(recorded: list[Recorded]) -> datetime:
    return recorded[0].envelope.occurred_at if recorded else datetime.now(UTC)


async def configure_http_tool(
    tenant_id: uuid.UUID,
    tool: HttpTool,
    secret: str | None,
    *,
    deps: AssistantDeps,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> AssistantView:
    """Add or replace an HTTP tool; its secret (for bearer or header auth) is sealed."""
    values = {} if secret is None else {HTTP_SECRET: _clean(secret, "secret")}

    async def store(conn: AsyncConnection, recorded: list[Recorded]) -> None:
        await replace_secrets(
            conn,
            deps.box,
            tenant_id=tenant_id,
            kind="http",
            name=tool.name,
            values=values,
            at=_at(recorded),
        )

    command = ConfigureHttpTool(tool=tool, has_secret=bool(values))
    state = await execute(
        deps, tenant_id, command, actor=actor, correlation_id=correlation_id, effect=store
    )
    return view(state)


async def remove_http_tool(
    tenant_id: uuid.UUID, name: str, *, deps: AssistantDeps, actor: Actor, correlation_id: uuid.UUID
) -> AssistantView:
    """Forget an HTTP tool and its secret (a no-op when there is none)."""

    async def forget(conn: AsyncConnection, recorded: list[Recorded]) -> None:
        await replace_secrets(
            conn, deps.box, tenant_id=tenant_id, kind="http", name=name, values={}, at=_at(recorded)
        )

    state = await execute(
        deps,
        tenant_id,
        RemoveHttpTool(name=name),
        actor=actor,
        correlation_id=correlation_id,
        effect=forget,
    )
    return view(state)


async def enable_mcp_server(
    tenant_id: uuid.UUID,
    server: str,
    credentials: Mapping[str, str],
    *,
    deps: AssistantDeps,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> AssistantView:
    """Enable a registered MCP server with the credentials its registration declares."""
    registered = (await registered_servers(deps.registry)).get(server)
    if registered is None:
        raise NotFoundError(f"no MCP server named {server}: an operator registers them")
    values = {name: _clean(value, f"credentials.{name}") for name, value in credentials.items()}

    async def store(conn: AsyncConnection, recorded: list[Recorded]) -> None:
        await replace_secrets(
            conn, deps.box, tenant_id=tenant_id, kind="mcp", name=server, values=values,
            at=_at(recorded),
        )  # fmt: skip

    command = EnableMcpServer(
        server=server, variables=tuple(values), declared=registered.env_from_tenant
    )
    state = await execute(
        deps, tenant_id, command, actor=actor, correlation_id=correlation_id, effect=store
    )
    return view(state)


async def disable_mcp_server(
    tenant_id: uuid.UUID,
    server: str,
    *,
    deps: AssistantDeps,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> AssistantView:
    """Stop using an MCP server and delete the tenant's credentials for it."""

    async def forget(conn: AsyncConnection, recorded: list[Recorded]) -> None:
        await replace_secrets(
            conn, deps.box, tenant_id=tenant_id, kind="mcp", name=server, values={},
            at=_at(recorded),
        )  # fmt: skip

    state = await execute(
        deps,
        tenant_id,
        DisableMcpServer(server=server),
        actor=actor,
        correlation_id=correlation_id,
        effect=forget,
    )
    return view(state)
