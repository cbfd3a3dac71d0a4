"""Use cases of the assistant settings: configure, store and remove keys, load for a reply.

The tools' use cases are in `tools`; they run through `execute` like these.

A key is sealed (`crypto.SecretBox`) into `tenants.provider_keys` in the same transaction as its
`ProviderKeySet` event, like the API-key index: the event says a key exists, the table holds it.
"""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.envelope import Metadata, Recorded
from metachat.eventstore.postgres import PostgresEventStore
from metachat.kernel.actors import Actor
from metachat.kernel.errors import ConcurrencyError, ValidationError
from metachat.tenants import model as tenant_model
from metachat.tenants.assistant import model
from metachat.tenants.assistant.crypto import KEY_VERSION, SecretBox
from metachat.tenants.assistant.secrets import (
    HTTP_SECRET,
    LoadedHttpTool,
    LoadedMcpServer,
    open_secrets,
)
from metachat.tenants.commands import (
    AssistantSettings,
    ConfigureAssistant,
    HttpTool,
    ProviderKind,
    RemoveProviderKey,
    SetProviderKey,
)
from metachat.tenants.mcp import registered_servers

T = TypeVar("T")
_RETRIES = 3
MAX_KEY_LENGTH = 500

_UPSERT_KEY = text("""
INSERT INTO tenants.provider_keys (tenant_id, provider, sealed, key_version, last_four, updated_at)
VALUES (:t, :p, :s, :v, :l, :at)
ON CONFLICT (tenant_id, provider)
DO UPDATE SET sealed = excluded.sealed, key_version = excluded.key_version,
              last_four = excluded.last_four, updated_at = excluded.updated_at
""")
_DELETE_KEY = text("DELETE FROM tenants.provider_keys WHERE tenant_id = :t AND provider = :p")
_SEALED_KEYS = text("SELECT provider, sealed FROM tenants.provider_keys WHERE tenant_id = :t")


class AssistantDeps(msgspec.Struct, frozen=True, kw_only=True):
    """What the assistant-settings use cases need."""

    store: PostgresEventStore
    box: SecretBox
    platform: PostgresEventStore | None = None
    """Reads the platform's MCP registry (the owner's store: the API's store sees one tenant)."""

    @property
    def registry(self) -> PostgresEventStore:
        """The store the MCP registry is read from."""
        return self.platform or self.store


class AssistantView(msgspec.Struct, frozen=True, kw_only=True):
    """The settings, which providers have a key (last four only), the tools, never a secret."""

    settings: AssistantSettings
    keys: dict[str, str]
    http_tools: list[HttpTool] = msgspec.field(default_factory=list)
    mcp_servers: dict[str, list[str]] = msgspec.field(default_factory=dict)


class LoadedAssistant(msgspec.Struct, frozen=True, kw_only=True):
    """What a reply needs: its settings, the opened keys of its chain, its tools, the name.

    The tenant's name is the prompt's brand when the settings name none.
    """

    settings: AssistantSettings
    api_keys: dict[str, str]
    http_tools: tuple[LoadedHttpTool, ...] = ()
    mcp_servers: tuple[LoadedMcpServer, ...] = ()
    tenant_name: str = ""

    def __repr__(self) -> str:
        return (
            f"LoadedAssistant(settings={self.settings!r}, api_keys=<{len(self.api_keys)}>, "
            f"http_tools={list(self.http_tools)!r}, mcp_servers={list(self.mcp_servers)!r}, "
            f"tenant_name={self.tenant_name!r})"
        )


async def _with_retry(attempt: Callable[[], Awaitable[T]]) -> T:
    for remaining in range(_RETRIES, 0, -1):
        try:
            return await attempt()
        except ConcurrencyError:
            if remaining == 1:
                raise
    raise AssertionError("unreachable")


async def _state(
    store: PostgresEventStore, tenant_id: uuid.UUID, conn: AsyncConnection | None = None
) -> tuple[model.AssistantState, int]:
    recorded = await store.read_stream(model.stream_id(tenant_id), conn=conn)
    return model.replay([r.event for r in recorded]), len(recorded)


async def execute(
    deps: AssistantDeps,
    tenant_id: uuid.UUID,
    command: model.Command,
    *,
    actor: Actor,
    correlation_id: uuid.UUID,
    effect: Callable[[AsyncConnection, list[Recorded]], Awaitable[None]] | None = None,
) -> model.AssistantState:
    """Load, decide, append (and run `effect` in the same transaction); the new state."""

    async def attempt() -> model.AssistantState:
        async with deps.store.engine.begin() as conn:
            state, version = await _state(deps.store, tenant_id, conn)
            events = model.decide(state, command)
            metadata = Metadata(tenant_id=tenant_id, actor=actor, correlation_id=correlation_id)
            recorded = await deps.store.append(
                model.stream_id(tenant_id),
                events,
                expected_version=version,
                metadata=metadata,
                conn=conn,
            )
            if effect is not None:
                await effect(conn, recorded)
        deps.store.committed()
        for event in events:
            state = model.evolve(state, event)
        return state

    return await _with_retry(attempt)


def view(state: model.AssistantState) -> AssistantView:
    """What the API shows of the state (never a secret)."""
    return AssistantView(
        settings=state.settings,
        keys=dict(sorted(state.keys.items())),
        http_tools=[state.http_tools[name] for name in sorted(state.http_tools)],
        mcp_servers=dict(sorted(state.mcp_servers.items())),
    )


async def configure_assistant(
    tenant_id: uuid.UUID,
    settings: AssistantSettings,
    *,
    deps: AssistantDeps,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> AssistantView:
    """Replace the assistant's settings (every model in the chain must have its key)."""
    state = await execute(
        deps,
        tenant_id,
        ConfigureAssistant(settings=settings),
        actor=actor,
        correlation_id=correlation_id,
    )
    return view(state)


async def set_provider_key(
    tenant_id: uuid.UUID,
    provider: ProviderKind,
    api_key: str,
    *,
    deps: AssistantDeps,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> AssistantView:
    """Store a provider's key, sealed; only its last four characters are ever shown."""
    cleaned = api_key.strip()
    if not cleaned or len(cleaned) > MAX_KEY_LENGTH or any(c.isspace() for c in cleaned):
        raise ValidationError(
            f"api_key must be 1 to {MAX_KEY_LENGTH} characters without spaces", field="api_key"
        )
    sealed = deps.box.seal(cleaned, tenant_id=tenant_id, name=provider)

    async def store_key(conn: AsyncConnection, recorded: list[Recorded]) -> None:
        params = {
            "t": tenant_id,
            "p": provider,
            "s": sealed,
            "v": KEY_VERSION,
            "l": cleaned[-4:],
            "at": recorded[0].envelope.occurred_at if recorded else datetime.now(UTC),
        }
        await conn.execute(_UPSERT_KEY, params)

    command = SetProviderKey(provider=provider, last_four=cleaned[-4:])
    state = await execute(
        deps, tenant_id, command, actor=actor, correlation_id=correlation_id, effect=store_key
    )
    return view(state)


async def remove_provider_key(
    tenant_id: uuid.UUID,
    provider: ProviderKind,
    *,
    deps: AssistantDeps,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> AssistantView:
    """Delete a provider's key; refused while a model of the chain needs it."""

    async def delete_key(conn: AsyncConnection, _: list[Recorded]) -> None:
        await conn.execute(_DELETE_KEY, {"t": tenant_id, "p": provider})

    command = RemoveProviderKey(provider=provider)
    state = await execute(
        deps, tenant_id, command, actor=actor, correlation_id=correlation_id, effect=delete_key
    )
    return view(state)


async def get_assistant(store: PostgresEventStore, tenant_id: uuid.UUID) -> AssistantView:
    """Return the settings (the defaults until configured) and the providers with a key."""
    state, _ = await _state(store, tenant_id)
    return view(state)


async def load_assistant(deps: AssistantDeps, tenant_id: uuid.UUID) -> LoadedAssistant:
    """Return the settings with the opened keys of the chain's providers, the tools, the name."""
    async with deps.store.engine.connect() as conn:
        state, _ = await _state(deps.store, tenant_id, conn)
        tenant = await deps.store.read_stream(tenant_model.stream_id(tenant_id), conn=conn)
        wanted = {state.settings.primary.kind, *(c.kind for c in state.settings.fallbacks)}
        rows = (await conn.execute(_SEALED_KEYS, {"t": tenant_id})).all()
        tool_secrets = await open_secrets(conn, deps.box, tenant_id) if _has_tools(state) else {}
    registered = await registered_servers(deps.registry) if state.mcp_servers else {}
    opened = {
        row.provider: deps.box.open(bytes(row.sealed), tenant_id=tenant_id, name=row.provider)
        for row in rows
        if row.provider in wanted
    }
    http = tuple(
        LoadedHttpTool(tool=tool, secret=tool_secrets.get(("http", name), {}).get(HTTP_SECRET))
        for name, tool in sorted(state.http_tools.items())
    )
    # A server the operator removed since the tenant enabled it is simply not offered.
    mcp = tuple(
        LoadedMcpServer(server=registered[name], env=tool_secrets.get(("mcp", name), {}))
        for name in sorted(state.mcp_servers)
        if name in registered
    )
    return LoadedAssistant(
        settings=state.settings,
        api_keys=opened,
        http_tools=http,
        mcp_servers=mcp,
        tenant_name=tenant_model.replay([r.event for r in tenant]).name,
    )


def _has_tools(state: model.AssistantState) -> bool:
    return bool(state.http_tools or state.mcp_servers)
