"""Read-side queries of the tenants context, over the stable `tenants.tenant_directory` view."""

import uuid
from datetime import datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.tenants.projections import TENANT_DIRECTORY

_directory = TENANT_DIRECTORY.view_table("tenant_directory")
_d = _directory.c

MAX_PAGE = 500


class TenantDirectoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One tenant as the directory shows it."""

    tenant_id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime
    active_keys: int
    last_position: int


def _entry(row: object) -> TenantDirectoryEntry:
    return msgspec.convert(row, TenantDirectoryEntry, from_attributes=True)


async def list_tenants(
    conn: AsyncConnection, *, limit: int, after: uuid.UUID | None = None
) -> list[TenantDirectoryEntry]:
    """Return up to `limit` tenants in id order (creation order: ids are UUIDv7), after `after`.

    Platform-level (operators): the directory spans tenants by nature. Keyset pagination:
    pass the last `tenant_id` of a page as `after` to get the next one.
    """
    query = select(_directory).order_by(_d.tenant_id).limit(max(1, min(limit, MAX_PAGE)))
    if after is not None:
        query = query.where(_d.tenant_id > after)
    return [_entry(row) for row in await conn.execute(query)]


async def get_tenant_directory_entry(
    conn: AsyncConnection, *, tenant_id: uuid.UUID
) -> TenantDirectoryEntry | None:
    """Return one tenant's directory entry, or None if the directory does not show it (yet)."""
    row = (await conn.execute(select(_directory).where(_d.tenant_id == tenant_id))).first()
    return None if row is None else _entry(row)
