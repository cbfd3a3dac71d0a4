"""Use cases of the tenants context: load the stream, decide, append with the outbox, index keys."""

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
from metachat.kernel.errors import AuthenticationError, ConcurrencyError, NotFoundError
from metachat.kernel.ids import uuid7
from metachat.tenants import keys, model
from metachat.tenants.commands import (
    SCOPES,
    CreateTenant,
    IssueApiKey,
    RenameTenant,
    RevokeApiKey,
    Role,
)
from metachat.tenants.events import ApiKeyIssued, ApiKeyRevoked
from metachat.tenants.keycache import KEYS_CHANNEL, KeyCache

T = TypeVar("T")
_RETRIES = 3
_AUTHENTICATE = text("SELECT * FROM tenants.authenticate_api_key(:p, :h, :now)")


class IssuedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key as returned to its creator: the only time the plaintext is shown."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    api_key: str
    name: str
    scopes: list[str]
    expires_at: datetime | None = None


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated API caller: an API key (`key_id`) or a tenant user (`user_id`, `role`)."""

    tenant_id: uuid.UUID
    scopes: frozenset[str]
    key_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    role: Role | None = None

    @property
    def actor(self) -> Actor:
        """The actor recorded on the events this caller causes."""
        if self.user_id is not None:
            return Actor(kind="user", id=str(self.user_id))
        return Actor(kind="api_key", id=str(self.key_id))


class TenantDeps(msgspec.Struct, frozen=True, kw_only=True):
    """What the tenants use cases need."""

    store: PostgresEventStore
    pepper: str
    keys: KeyCache | None = None
    """The process's memory of authenticated API keys (None: ask the database every time)."""


async def _with_retry(attempt: Callable[[], Awaitable[T]]) -> T:
    """Retry a whole load-decide-append on an optimistic concurrency conflict."""
    for remaining in range(_RETRIES, 0, -1):
        try:
            return await attempt()
        except ConcurrencyError:
            if remaining == 1:
                raise
    raise AssertionError("unreachable")


async def _load(
    conn: AsyncConnection, store: PostgresEventStore, tenant_id: uuid.UUID
) -> tuple[model.TenantState, int]:
    recorded = await store.read_stream(model.stream_id(tenant_id), conn=conn)
    return model.replay([r.event for r in recorded]), len(recorded)


async def _index_keys(
    conn: AsyncConnection, recorded: list[Recorded], key_hashes: dict[uuid.UUID, bytes]
) -> None:
    """Keep the key index in step with the key events, in the same transaction."""
    for item in recorded:
        event, env = item.event, item.envelope
        if isinstance(event, ApiKeyIssued):
            await conn.execute(
                text("""INSERT INTO tenants.api_keys (tenant_id, key_id, prefix, key_hash, name,
                        scopes, last_four, created_at, expires_at)
                        VALUES (:t, :k, :p, :h, :n, :s, :l, :c, :e)"""),
                {
                    "t": env.tenant_id,
                    "k": event.key_id,
                    "p": event.prefix,
                    "h": key_hashes[event.key_id],
                    "n": event.name,
                    "s": event.scopes,
                    "l": event.last_four,
                    "c": env.occurred_at,
                    "e": event.expires_at,
                },
            )
        elif isinstance(event, ApiKeyRevoked):
            await conn.execute(
                text(
                    "UPDATE tenants.api_keys SET revoked_at = :at"
                    " WHERE tenant_id = :t AND key_id = :k"
                ),
                {"at": env.occurred_at, "t": env.tenant_id, "k": event.key_id},
            )
            # Delivered at commit, to every API process's key cache (`keycache`). Inside the
            # transaction on purpose: a revocation is rare, and it must not be lost.
            await conn.execute(
                text("SELECT pg_notify(:channel, :key)"),
                {"channel": KEYS_CHANNEL, "key": str(event.key_id)},
            )


def _new_key_command(
    name: str,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    replaces: uuid.UUID | None = None,
) -> tuple[IssueApiKey, keys.KeyMaterial]:
    material = keys.generate()
    command = IssueApiKey(
        key_id=uuid7(),
        name=name,
        prefix=material.prefix,
        last_four=material.last_four,
        scopes=scopes,
        expires_at=expires_at,
        replaces=replaces,
    )
    return command, material


async def create_tenant(
    name: str, *, deps: TenantDeps, actor: Actor, correlation_id: uuid.UUID
) -> IssuedKey:
    """Create a tenant with a first API key holding every scope."""
    tenant_id = uuid7()
    create = CreateTenant(tenant_id=tenant_id, name=name)
    issue, material = _new_key_command("default", SCOPES, None)
    events = model.decide(model.TenantState(), create)
    state = model.replay(events)
    events += model.decide(state, issue)
    metadata = Metadata(tenant_id=tenant_id, actor=actor, correlation_id=correlation_id)
    async with deps.store.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"), {"t": tenant_id}
        )
        recorded = await deps.store.append(
            model.stream_id(tenant_id), events, expected_version=0, metadata=metadata, conn=conn
        )
        await _index_keys(
            conn, recorded, {issue.key_id: keys.digest(material.plaintext, pepper=deps.pepper)}
        )
    deps.store.committed()
    return IssuedKey(
        tenant_id=tenant_id,
        key_id=issue.key_id,
        api_key=material.plaintext,
        name=issue.name,
        scopes=list(issue.scopes),
    )


async def _execute(
    deps: TenantDeps,
    tenant_id: uuid.UUID,
    command: model.Command,
    *,
    actor: Actor,
    correlation_id: uuid.UUID,
    key_hashes: dict[uuid.UUID, bytes] | None = None,
) -> list[Recorded]:
    async def attempt() -> list[Recorded]:
        async with deps.store.engine.begin() as conn:
            state, version = await _load(conn, deps.store, tenant_id)
            events = model.decide(state, command)
            metadata = Metadata(tenant_id=tenant_id, actor=actor, correlation_id=correlation_id)
            recorded = await deps.store.append(
                model.stream_id(tenant_id),
                events,
                expected_version=version,
                metadata=metadata,
                conn=conn,
            )
            await _index_keys(conn, recorded, key_hashes or {})
        deps.store.committed()
        if deps.keys is not None:
            # This process's own cache forgets at once; the others hear the NOTIFY.
            for item in recorded:
                if isinstance(item.event, ApiKeyRevoked):
                    deps.keys.forget(item.event.key_id)
        return recorded

    return await _with_retry(attempt)


async def _issue(
    deps: TenantDeps,
    tenant_id: uuid.UUID,
    command: IssueApiKey,
    material: keys.KeyMaterial,
    *,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> IssuedKey:
    """Append the key's events with its hash indexed, and return the plaintext (shown once)."""
    await _execute(
        deps,
        tenant_id,
        command,
        actor=actor,
        correlation_id=correlation_id,
        key_hashes={command.key_id: keys.digest(material.plaintext, pepper=deps.pepper)},
    )
    return IssuedKey(
        tenant_id=tenant_id,
        key_id=command.key_id,
        api_key=material.plaintext,
        name=command.name,
        scopes=sorted(set(command.scopes)),
        expires_at=command.expires_at,
    )


async def issue_api_key(
    tenant_id: uuid.UUID,
    *,
    name: str,
    scopes: tuple[str, ...] = SCOPES,
    expires_at: datetime | None = None,
    deps: TenantDeps,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> IssuedKey:
    """Create an API key; the plaintext is returned once and never stored."""
    command, material = _new_key_command(name, scopes, expires_at)
    return await _issue(
        deps, tenant_id, command, material, actor=actor, correlation_id=correlation_id
    )


async def rotate_api_key(
    tenant_id: uuid.UUID,
    key_id: uuid.UUID,
    *,
    deps: TenantDeps,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> IssuedKey:
    """Replace a key with a new one holding the same name and scopes; the old one stops working."""
    async with deps.store.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT name, scopes, expires_at FROM tenants.api_keys"
                    " WHERE tenant_id = :t AND key_id = :k"
                ),
                {"t": tenant_id, "k": key_id},
            )
        ).first()
    if row is None:
        raise NotFoundError("API key not found", key_id=str(key_id))
    command, material = _new_key_command(
        row.name, tuple(row.scopes), row.expires_at, replaces=key_id
    )
    return await _issue(
        deps, tenant_id, command, material, actor=actor, correlation_id=correlation_id
    )


async def revoke_api_key(
    tenant_id: uuid.UUID,
    key_id: uuid.UUID,
    *,
    deps: TenantDeps,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> None:
    """Revoke a key; revoking a revoked key changes nothing."""
    await _execute(
        deps, tenant_id, RevokeApiKey(key_id=key_id), actor=actor, correlation_id=correlation_id
    )


async def rename_tenant(
    tenant_id: uuid.UUID, name: str, *, deps: TenantDeps, actor: Actor, correlation_id: uuid.UUID
) -> None:
    """Change a tenant's display name."""
    await _execute(
        deps, tenant_id, RenameTenant(name=name), actor=actor, correlation_id=correlation_id
    )


async def authenticate(api_key: str, *, deps: TenantDeps) -> Principal:
    """Return the principal for a presented key, or raise AuthenticationError (never says why)."""
    prefix = keys.parse_prefix(api_key)
    if prefix is None:
        raise AuthenticationError("invalid API key")
    digest = keys.digest(api_key, pepper=deps.pepper)
    cache = deps.keys
    if cache is not None and isinstance(known := cache.get(digest), Principal):
        return known
    generation = cache.generation if cache is not None else 0
    async with deps.store.engine.connect() as conn:
        # One statement in autocommit, one round trip: a SECURITY DEFINER function finds the key
        # past row-level security (the tenant is not known yet) and keeps its last use
        # (migrations 0008, 0011).
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        row = (
            await auto.execute(_AUTHENTICATE, {"p": prefix, "h": digest, "now": datetime.now(UTC)})
        ).first()
    if row is None:
        raise AuthenticationError("invalid API key")
    principal = Principal(tenant_id=row.tenant_id, key_id=row.key_id, scopes=frozenset(row.scopes))
    if cache is not None:
        cache.put(
            digest,
            principal,
            key_id=row.key_id,
            expires_at=row.expires_at,
            generation=generation,
        )
    return principal
