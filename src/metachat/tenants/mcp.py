"""The platform's MCP servers: registered by an operator (the CLI), never by a tenant.

A registration names the command the platform runs and the environment variables whose values
each tenant gives. It lives in the platform tenant's stream `mcp-servers`, so the registry is
events like everything else; no API route appends to it (the API acts for a tenant, and the
platform tenant is no one's). Tenants enable servers by name (`assistant.tools`).

Variables that change how an interpreter or the loader starts are refused: a tenant giving
`LD_PRELOAD` or `PYTHONSTARTUP` a value would be running code of its choosing on the platform.
"""

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.envelope import Event, Metadata
from metachat.eventstore.postgres import PostgresEventStore
from metachat.kernel.actors import Actor
from metachat.kernel.errors import NotFoundError, ValidationError
from metachat.tenants.commands import RegisterMcpServer
from metachat.tenants.events import McpServerRegistered, McpServerRemoved

PLATFORM_TENANT = uuid.UUID("00000000-0000-0000-0000-000000000000")
"""The tenant of the platform's own facts (created by the first migration)."""
STREAM = "mcp-servers"
_DANGEROUS_PREFIXES = ("LD_", "DYLD_", "PYTHON", "NODE_", "PERL", "RUBY", "BASH_", "GCONV", "JAVA_")
_DANGEROUS = frozenset({"PATH", "HOME", "ENV", "SHELL", "IFS", "PS4", "SSL_CERT_FILE", "TMPDIR"})


def _check(command: RegisterMcpServer) -> None:
    if not command.command.strip():
        raise ValidationError("the command is blank: give the program's path", field="command")
    for name in command.env_from_tenant:
        if name in _DANGEROUS or name.startswith(_DANGEROUS_PREFIXES):
            raise ValidationError(
                f"{name} changes how programs start: a tenant may not set it", field="env"
            )
    if len(set(command.env_from_tenant)) != len(command.env_from_tenant):
        raise ValidationError("a variable is named twice", field="env")


def replay(events: list[Event]) -> dict[str, RegisterMcpServer]:
    """The registered servers, by name."""
    servers: dict[str, RegisterMcpServer] = {}
    for event in events:
        if isinstance(event, McpServerRegistered):
            servers[event.name] = RegisterMcpServer(
                name=event.name,
                command=event.command,
                args=tuple(event.args),
                env_from_tenant=tuple(event.env_from_tenant),
            )
        elif isinstance(event, McpServerRemoved):
            servers.pop(event.name, None)
    return servers


async def registered_servers(
    store: PostgresEventStore, conn: AsyncConnection | None = None
) -> dict[str, RegisterMcpServer]:
    """Every registered MCP server, by name."""
    return replay([r.event for r in await store.read_stream(STREAM, conn=conn)])


async def _append(
    store: PostgresEventStore, events: list[Event], *, actor: Actor, correlation_id: uuid.UUID
) -> None:
    async with store.engine.begin() as conn:
        version = len(await store.read_stream(STREAM, conn=conn))
        metadata = Metadata(tenant_id=PLATFORM_TENANT, actor=actor, correlation_id=correlation_id)
        # Expected version: two operators registering at once conflict, and one retries.
        await store.append(STREAM, events, expected_version=version, metadata=metadata, conn=conn)
    store.committed()


async def register_server(
    store: PostgresEventStore,
    command: RegisterMcpServer,
    *,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> RegisterMcpServer:
    """Register or replace a server (an operator's act: the command line calls this)."""
    _check(command)
    event = McpServerRegistered(
        name=command.name,
        command=command.command,
        args=list(command.args),
        env_from_tenant=list(command.env_from_tenant),
    )
    await _append(store, [event], actor=actor, correlation_id=correlation_id)
    return command


async def remove_server(
    store: PostgresEventStore, name: str, *, actor: Actor, correlation_id: uuid.UUID
) -> None:
    """Take a server off the platform; tenants that enabled it simply no longer get its tools."""
    if name not in await registered_servers(store):
        raise NotFoundError(f"no MCP server named {name}", name=name)
    await _append(store, [McpServerRemoved(name=name)], actor=actor, correlation_id=correlation_id)
