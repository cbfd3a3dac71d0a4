"""Reads that need no projection: a tenant from its own stream, its keys from the key index.

Both are written in the same transaction as the tenant's events, so they are current the moment
a command returns (the tenant directory projection may lag behind). The key index also holds
`last_used_at`, which no event carries.
"""

import uuid
from datetime import datetime

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.eventstore.postgres import PostgresEventStore
from metachat.kernel.errors import NotFoundError
from metachat.tenants import model

_LIST = text("""
SELECT key_id, name, prefix, last_four, scopes, created_at, expires_at, revoked_at, last_used_at
FROM tenants.api_keys WHERE tenant_id = :tenant_id
ORDER BY created_at, key_id
""")


class TenantView(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant as its events describe it."""

    tenant_id: uuid.UUID
    name: str
    created_at: datetime
    active_keys: int


class ApiKeyView(msgspec.Struct, frozen=True, kw_only=True):
    """One API key as operators and API clients see it: never its hash."""

    key_id: uuid.UUID
    name: str
    prefix: str
    last_four: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


async def list_api_keys(engine: AsyncEngine, *, tenant_id: uuid.UUID) -> list[ApiKeyView]:
    """Return every key of one tenant, oldest first, revoked ones included."""
    async with engine.connect() as conn:
        rows = (await conn.execute(_LIST, {"tenant_id": tenant_id})).all()
    return [
        ApiKeyView(
            key_id=row.key_id,
            name=row.name,
            prefix=row.prefix,
            last_four=row.last_four,
            scopes=list(row.scopes),
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )
        for row in rows
    ]


async def get_tenant(
    store: PostgresEventStore, *, tenant_id: uuid.UUID, now: datetime
) -> TenantView:
    """Return one tenant folded from its stream; keys expired at `now` do not count as active."""
    recorded = await store.read_stream(model.stream_id(tenant_id))
    state = model.replay([r.event for r in recorded])
    if not recorded or state.tenant_id is None:
        raise NotFoundError("tenant not found", tenant_id=str(tenant_id))
    active = sum(
        key.active and (key.expires_at is None or key.expires_at > now)
        for key in state.keys.values()
    )
    return TenantView(
        tenant_id=state.tenant_id,
        name=state.name,
        created_at=recorded[0].envelope.occurred_at,
        active_keys=active,
    )
