"""The audit trail of a tenant: its administrative events, read from the event store.

Administrative means every `tenants.*` event (the tenant, its API keys, its users). The query
filters on `type = ANY(...)` so PostgreSQL walks `events (tenant_id, type, position)` for those
types only, however many conversation events the tenant has.
"""

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.kernel.actors import Actor
from metachat.tenants.events import EVENTS

MAX_PAGE = 200
_TYPES = [event.type for event in EVENTS]
_LAST = 2**63 - 1


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One administrative event with who caused it."""

    position: int
    type: str
    occurred_at: datetime
    actor: Actor
    correlation_id: uuid.UUID
    payload: dict[str, Any]


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    """Entries newest first; `next_cursor` continues with older ones (None: no more)."""

    items: list[AuditEntry]
    next_cursor: int | None


async def read_audit(
    engine: AsyncEngine, tenant_id: uuid.UUID, *, before: int | None, limit: int
) -> AuditPage:
    """Return up to `limit` administrative events older than position `before`, newest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""SELECT position, type, occurred_at, actor, correlation_id, payload
                        FROM eventstore.events
                        WHERE tenant_id = :t AND type = ANY(:types) AND position < :before
                        ORDER BY position DESC LIMIT :n"""),
                {
                    "t": tenant_id,
                    "types": _TYPES,
                    "before": _LAST if before is None else before,
                    "n": limit + 1,
                },
            )
        ).all()
    items = [
        AuditEntry(
            position=row.position,
            type=row.type,
            occurred_at=row.occurred_at,
            actor=msgspec.convert(row.actor, Actor),
            correlation_id=row.correlation_id,
            payload=row.payload,
        )
        for row in rows[:limit]
    ]
    return AuditPage(items=items, next_cursor=items[-1].position if len(rows) > limit else None)
