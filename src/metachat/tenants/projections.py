"""The `tenant_directory` read model: one row per tenant, built from the tenants events.

Every handler is an idempotent bulk upsert: a row remembers the position of the last event
applied to it (`last_position`) and an update only applies to rows behind the event, so a page
applied twice (its first commit lost) changes nothing the second time.
"""

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    bindparam,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.envelope import Recorded
from metachat.eventstore.projection import PLACEHOLDER, Projection
from metachat.tenants.events import ApiKeyIssued, ApiKeyRevoked, TenantCreated, TenantRenamed

E = TypeVar("E")

metadata = MetaData()

# Only a foreign-key target: the tenant root is written with the tenant's first event and is
# never rebuilt, so every generation's rows can reference it.
Table("tenant_ids", metadata, Column("tenant_id", Uuid, primary_key=True), schema="tenants")

tenant_directory = Table(
    "tenant_directory",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenants.tenant_ids.tenant_id"), primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("active_keys", Integer, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    schema=PLACEHOLDER,
)

_t = tenant_directory.c

_CREATE = insert(tenant_directory).on_conflict_do_nothing(index_elements=[_t.tenant_id])


def _guarded(**values: Any) -> Any:
    """An UPDATE of one tenant's row that only applies to rows behind the event's position."""
    return (
        update(tenant_directory)
        .where(_t.tenant_id == bindparam("b_tenant"), _t.last_position < bindparam("b_position"))
        .values(updated_at=bindparam("b_at"), last_position=bindparam("b_position"), **values)
    )


_RENAME = _guarded(name=bindparam("b_name"))
_KEY_ISSUED = _guarded(active_keys=_t.active_keys + 1)
_KEY_REVOKED = _guarded(active_keys=_t.active_keys - 1)


def _event(recorded: Recorded, kind: type[E]) -> E:
    event = recorded.event
    if not isinstance(event, kind):  # the projection routes by type; anything else is a bug
        raise TypeError(f"{recorded.envelope.type} routed to the {kind.__name__} handler")
    return event


def _row(recorded: Recorded, **extra: Any) -> dict[str, Any]:
    env = recorded.envelope
    return {"b_tenant": env.tenant_id, "b_position": env.position, "b_at": env.occurred_at, **extra}


async def on_tenant_created(conn: AsyncConnection, records: Sequence[Recorded]) -> None:
    """Insert the tenant's row (a second insert of the same tenant is ignored)."""
    rows = []
    for recorded in records:
        event, env = _event(recorded, TenantCreated), recorded.envelope
        rows.append(
            {
                "tenant_id": event.tenant_id,
                "name": event.name,
                "created_at": env.occurred_at,
                "updated_at": env.occurred_at,
                "active_keys": 0,
                "last_position": env.position,
            }
        )
    await conn.execute(_CREATE, rows)


async def on_tenant_renamed(conn: AsyncConnection, records: Sequence[Recorded]) -> None:
    """Set the new name."""
    await conn.execute(_RENAME, [_row(r, b_name=_event(r, TenantRenamed).name) for r in records])


async def on_api_key_issued(conn: AsyncConnection, records: Sequence[Recorded]) -> None:
    """Count one more active key."""
    await conn.execute(_KEY_ISSUED, [_row(r) for r in records])


async def on_api_key_revoked(conn: AsyncConnection, records: Sequence[Recorded]) -> None:
    """Count one active key less (a key is revoked at most once: the model refuses twice)."""
    await conn.execute(_KEY_REVOKED, [_row(r) for r in records])


TENANT_DIRECTORY = Projection(
    name="tenant_directory",
    metadata=metadata,
    handlers={
        TenantCreated.type: on_tenant_created,
        TenantRenamed.type: on_tenant_renamed,
        ApiKeyIssued.type: on_api_key_issued,
        ApiKeyRevoked.type: on_api_key_revoked,
    },
    views={"tenant_directory": "tenants.tenant_directory"},
)
"""Events of one tenant share its stream, which is the default key."""
