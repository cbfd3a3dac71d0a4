"""Helpers for the projection tests: a tenant event writer, an independent oracle, model reads."""

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from metachat.eventstore.envelope import Event, Metadata, Recorded
from metachat.eventstore.postgres import PostgresEventStore
from metachat.eventstore.projection import Projection, ProjectionRunner
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.settings import ProjectorSettings
from metachat.tenants.events import ApiKeyIssued, ApiKeyRevoked, TenantCreated, TenantRenamed
from metachat.tenants.model import stream_id
from metachat.tenants.projections import TENANT_DIRECTORY

Row = tuple[str, datetime, datetime, int, int]


def a_key() -> ApiKeyIssued:
    return ApiKeyIssued(
        key_id=uuid7(), name="k", prefix=uuid7().hex[:12], last_four="wxyz", scopes=["tenant:read"]
    )


@dataclasses.dataclass
class _Tenant:
    version: int
    keys: list[uuid.UUID]


class TenantWriter:
    """Appends tenant events straight through the store; one writer owns its tenants."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.tenants: dict[uuid.UUID, _Tenant] = {}

    async def _append(
        self, conn: AsyncConnection, tenant_id: uuid.UUID, events: list[Event]
    ) -> None:
        state = self.tenants.get(tenant_id) or _Tenant(0, [])
        metadata = Metadata(tenant_id=tenant_id, actor=Actor.system("test"), correlation_id=uuid7())
        await self.store.append(
            stream_id(tenant_id),
            events,
            expected_version=state.version,
            metadata=metadata,
            conn=conn,
        )

    def _commit(self, tenant_id: uuid.UUID, events: list[Event]) -> None:
        state = self.tenants.setdefault(tenant_id, _Tenant(0, []))
        state.version += len(events)
        for event in events:
            if isinstance(event, ApiKeyIssued):
                state.keys.append(event.key_id)
            elif isinstance(event, ApiKeyRevoked):
                state.keys.remove(event.key_id)

    def _new_tenant(self, name: str) -> tuple[uuid.UUID, list[Event]]:
        tenant_id = uuid7()
        return tenant_id, [TenantCreated(tenant_id=tenant_id, name=name), a_key()]

    @staticmethod
    def _history(keys: list[uuid.UUID], rng: random.Random, ops: int) -> list[Event]:
        """A valid follow-up given the active `keys` (not changed): renames, new keys, revocations."""
        keys = list(keys)
        events: list[Event] = []
        for _ in range(ops):
            choice = rng.random()
            if choice < 0.4:
                events.append(TenantRenamed(name=f"t-{rng.randrange(10**6)}"))
            elif choice < 0.7 or not keys:
                key = a_key()
                keys.append(key.key_id)
                events.append(key)
            else:
                events.append(
                    ApiKeyRevoked(key_id=keys.pop(rng.randrange(len(keys))), reason="test")
                )
        return events

    async def seed(
        self, *, tenants: int, events_per_tenant: int = 5, per_tx: int = 100, seed: int = 1
    ) -> int:
        """Create tenants with a history each, `per_tx` tenants per transaction; return events."""
        rng, total = random.Random(seed), 0
        for start in range(0, tenants, per_tx):
            batch = []
            async with self.store.engine.begin() as conn:
                for i in range(start, min(start + per_tx, tenants)):
                    tenant_id, events = self._new_tenant(f"tenant-{i}")
                    first_key = [e.key_id for e in events if isinstance(e, ApiKeyIssued)]
                    events += self._history(first_key, rng, max(events_per_tenant - len(events), 0))
                    await conn.execute(
                        text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"),
                        {"t": tenant_id},
                    )
                    await self._append(conn, tenant_id, events)
                    batch.append((tenant_id, events))
            for tenant_id, events in batch:
                self._commit(tenant_id, events)
                total += len(events)
            self.store.committed()
        return total

    async def create_tenant(self, name: str) -> uuid.UUID:
        """Create one tenant (two events) in its own transaction."""
        tenant_id, events = self._new_tenant(name)
        async with self.store.engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"), {"t": tenant_id}
            )
            await self._append(conn, tenant_id, events)
        self._commit(tenant_id, events)
        self.store.committed()
        return tenant_id

    async def churn(
        self,
        stop: asyncio.Event,
        rng: random.Random,
        *,
        hold_max: float = 0.02,
        rollback_ratio: float = 0.1,
    ) -> int:
        """Until `stop`: random changes to own tenants, some held open, some rolled back."""
        committed = 0
        mine = [await self.create_tenant(f"churn-{rng.randrange(10**6)}")]
        while not stop.is_set():
            if rng.random() < 0.1:
                mine.append(await self.create_tenant(f"churn-{rng.randrange(10**6)}"))
                committed += 2
                continue
            tenant_id = rng.choice(mine)
            events = self._history(self.tenants[tenant_id].keys, rng, rng.randint(1, 3))
            async with self.store.engine.connect() as conn, conn.begin() as tx:
                await self._append(conn, tenant_id, events)
                await asyncio.sleep(rng.uniform(0, hold_max))  # a live gap for the reader
                if rng.random() < rollback_ratio:
                    await tx.rollback()  # a dead gap: the positions are burnt
                    continue
            self._commit(tenant_id, events)
            self.store.committed()
            committed += len(events)
        return committed


async def oracle(engine: AsyncEngine) -> dict[uuid.UUID, Row]:
    """The directory folded straight from the events table, independent of the handlers."""
    rows: dict[uuid.UUID, list[Any]] = {}
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT position, tenant_id, type, occurred_at, payload FROM eventstore.events ORDER BY position"
            )
        )
        for position, tenant_id, type_, at, payload in result:
            if type_ == TenantCreated.type:
                rows[tenant_id] = [payload["name"], at, at, 0, position]
                continue
            row = rows[tenant_id]
            row[1:] = [row[1], at, row[3], position]
            if type_ == TenantRenamed.type:
                row[0] = payload["name"]
            elif type_ == ApiKeyIssued.type:
                row[3] += 1
            elif type_ == ApiKeyRevoked.type:
                row[3] -= 1
    return {k: (v[0], v[1], v[2], v[3], v[4]) for k, v in rows.items()}


async def read_model(engine: AsyncEngine) -> dict[uuid.UUID, Row]:
    """The directory as readers see it (through the view)."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT tenant_id, name, created_at, updated_at, active_keys, last_position FROM tenants.tenant_directory"
            )
        )
        return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in result}


async def checkpoint(engine: AsyncEngine, name: str = "tenant_directory") -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT position, generation FROM eventstore.checkpoints WHERE name = :n"),
                {"n": name},
            )
        ).one()
    return row.position, row.generation


async def head(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(text("SELECT coalesce(max(position), 0) FROM eventstore.events")) or 0
        )


async def all_positions(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as conn:
        return set((await conn.scalars(text("SELECT position FROM eventstore.events"))).all())


async def caught_up(engine: AsyncEngine) -> bool:
    return (await checkpoint(engine))[0] == await head(engine)


def instrumented(projection: Projection, applied: list[int]) -> Projection:
    """The same projection, recording every position its handlers are given (before commit)."""

    def wrap(handler: Callable[[AsyncConnection, Sequence[Recorded]], Awaitable[None]]) -> Any:
        async def recorded(conn: AsyncConnection, records: Sequence[Recorded]) -> None:
            applied.extend(r.envelope.position for r in records)
            await handler(conn, records)

        return recorded

    return dataclasses.replace(
        projection, handlers={t: wrap(h) for t, h in projection.handlers.items()}
    )


async def schemas(engine: AsyncEngine) -> list[str]:
    """Every generation schema of the tenant directory (other projections are installed too)."""
    query = text(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'proj_tenant_directory_g%' ORDER BY 1"
    )
    async with engine.connect() as conn:
        return list((await conn.scalars(query)).all())


async def view_target(engine: AsyncEngine) -> str:
    """The definition of the tenant directory view (which generation it reads)."""
    async with engine.connect() as conn:
        return str(await conn.scalar(text("SELECT pg_get_viewdef('tenants.tenant_directory')")))


LIVE = ProjectorSettings(batch_size=500, poll_interval=0.05)


@contextlib.asynccontextmanager
async def live_runner(store: PostgresEventStore) -> AsyncIterator[ProjectionRunner]:
    """A live tenant-directory runner for the duration of the block."""
    runner = ProjectionRunner(TENANT_DIRECTORY, store=store, settings=LIVE)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await task
