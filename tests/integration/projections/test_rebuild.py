"""R12, R13: zero-downtime rebuild under reads and writes; no side effects; failure leaves N serving."""

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import random
import socket
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Column, MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.bootstrap import Deps
from metachat.database.engine import create_engine
from metachat.eventstore.projection import (
    LeaseTimeoutError,
    ProjectionRunner,
    RebuildError,
    RebuildProgress,
    lease,
    rebuild,
)
from metachat.settings import ProjectorSettings
from metachat.tenants.projections import TENANT_DIRECTORY
from metachat.tenants.queries import get_tenant_directory_entry, list_tenants
from tests.integration.projections.support import (
    Row,
    TenantWriter,
    caught_up,
    checkpoint,
    eventually,
    oracle,
    read_model,
)

REBUILD_TENANTS = int(os.environ.get("MC_REBUILD_TENANTS", "4000"))  # x 5 events each
LIVE = ProjectorSettings(batch_size=500, poll_interval=0.05)


class Reader:
    """~50 reads/s through the view: counts, a known tenant's content, and a page of the list.

    It runs in its own process (spawned, with its own engine), so that the rebuild's CPU work
    in the test's process does not throttle the read rate; `counts` are shared with the test.
    """

    def __init__(self, url: str, baseline: dict[uuid.UUID, Row]) -> None:
        self.url = url
        self.baseline = baseline
        self.ids = list(baseline)
        # The baseline tenants do not change during the test; tenants created meanwhile are newer.
        self.cutoff = max(row[1] for row in baseline.values())
        self.keys = sum(row[3] for row in baseline.values())
        self.reads = 0
        self.errors: list[str] = []
        self.bad: list[str] = []
        self.last_count = 0

    async def one(self, engine: AsyncEngine, rng: random.Random) -> None:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*) AS n, count(*) FILTER (WHERE created_at <= :cutoff) AS known, "
                        "sum(active_keys) FILTER (WHERE created_at <= :cutoff) AS keys FROM tenants.tenant_directory"
                    ),
                    {"cutoff": self.cutoff},
                )
            ).one()
            tenant_id = rng.choice(self.ids)
            entry = await get_tenant_directory_entry(conn, tenant_id=tenant_id)
            page = await list_tenants(conn, limit=20)
        if row.n < self.last_count or row.known != len(self.ids) or row.keys != self.keys:
            self.bad.append(
                f"count {row.n} (before {self.last_count}), known {row.known}/{len(self.ids)}, "
                f"keys {row.keys}/{self.keys}"
            )
        self.last_count = max(self.last_count, row.n)
        expected = self.baseline[tenant_id]
        if (
            entry is None
            or (
                entry.name,
                entry.created_at,
                entry.updated_at,
                entry.active_keys,
                entry.last_position,
            )
            != expected
        ):
            self.bad.append(f"tenant {tenant_id}: {entry} != {expected}")
        if len(page) != 20:
            self.bad.append(f"list page of {len(page)}")

    async def loop(self, stop: Any, reads: Any) -> None:
        engine = create_engine(self.url, pool_size=2)
        rng = random.Random(3)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await self.one(engine, rng)
                except Exception as exc:
                    self.errors.append(repr(exc))
                self.reads += 1
                reads.value = self.reads
                await asyncio.sleep(max(0.0, 0.02 - (time.monotonic() - started)))
        finally:
            await engine.dispose()

    def run_in_child(self, stop: Any, reads: Any, results: Any) -> None:
        asyncio.run(self.loop(stop, reads))
        results.put((self.reads, self.errors, self.bad))


class ReaderProcess:
    def __init__(self, url: str, baseline: dict[uuid.UUID, Row]) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop, self.count, self.results = (
            context.Event(),
            context.Value("i", 0),
            context.Queue(),
        )
        self.process = context.Process(
            target=Reader(url, baseline).run_in_child,
            args=(self.stop, self.count, self.results),
            name="r12-reader",
        )
        self.process.start()

    @property
    def reads(self) -> int:
        return int(self.count.value)

    async def finish(self) -> tuple[int, list[str], list[str]]:
        self.stop.set()
        outcome = await asyncio.to_thread(self.results.get, True, 60)
        await asyncio.to_thread(self.process.join, 30)
        return outcome


async def _positive(value: int) -> bool:
    return value > 0


async def _writer(writer: TenantWriter, stop: asyncio.Event, created: list[uuid.UUID]) -> None:
    while not stop.is_set():
        created.append(await writer.create_tenant(f"during-{len(created)}"))
        await asyncio.sleep(0.03)


async def _schemas(deps: Deps) -> list[str]:
    async with deps.engine.connect() as conn:
        return list(
            (
                await conn.scalars(
                    text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'proj%' ORDER BY 1")
                )
            ).all()
        )


async def _view_target(deps: Deps) -> str:
    async with deps.engine.connect() as conn:
        return str(await conn.scalar(text("SELECT pg_get_viewdef('tenants.tenant_directory')")))


@contextlib.asynccontextmanager
async def _live_runner(deps: Deps):
    runner = ProjectionRunner(TENANT_DIRECTORY, store=deps.store, settings=LIVE)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await task


class TestZeroDowntimeRebuild:
    async def test_readers_never_see_an_empty_or_partial_model(self, deps: Deps) -> None:
        writer = TenantWriter(deps.store)
        seeded = await writer.seed(tenants=REBUILD_TENANTS)
        async with _live_runner(deps) as runner:
            await eventually(lambda: caught_up(deps.engine))
            baseline = await read_model(deps.engine)
            assert baseline == await oracle(deps.engine)
            reader = ReaderProcess(deps.database_url, baseline)
            await eventually(lambda: _positive(reader.reads))
            stop_io = asyncio.Event()
            created: list[uuid.UUID] = []
            io = asyncio.create_task(_writer(writer, stop_io, created))
            live_positions: list[tuple[str, int | None]] = []
            reports: list[RebuildProgress] = []

            def progress(report: RebuildProgress) -> None:
                reports.append(report)
                live_positions.append((report.phase, runner.position))

            try:
                await asyncio.sleep(0.2)  # reads and writes on generation 1 first
                reads_before, started = reader.reads, time.monotonic()
                result = await rebuild(TENANT_DIRECTORY, store=deps.store, progress=progress)
                reads_during, rebuild_s = reader.reads - reads_before, time.monotonic() - started
                await asyncio.sleep(0.3)  # keep reading and writing on the new generation
            finally:
                stop_io.set()
                await io
                reads, errors, bad = await reader.finish()
            await eventually(lambda: caught_up(deps.engine))
            assert runner.active, "the live runner resumed after the switch"
        print(
            f"\nR12: rebuilt {result.events} events ({seeded} seeded) at {result.events_per_s:,.0f} events/s; "
            f"hand-over {result.handover_seconds * 1000:.1f} ms, switch {result.switch_seconds * 1000:.1f} ms; "
            f"{reads} reads ({reads_during} during the rebuild: {reads_during / rebuild_s:.0f}/s), "
            f"{len(created)} tenants created meanwhile"
        )
        assert errors == []
        assert bad == []
        assert reads_during > 0
        replay = [p for phase, p in live_positions if phase == "replay"]
        assert replay[0] is not None
        assert replay[-1] is not None
        assert replay[-1] > replay[0], (
            "the live runner kept advancing generation 1 during the replay"
        )
        assert [r.events for r in reports] == sorted(r.events for r in reports)
        assert reports[-1].phase == "done"
        assert reports[-1].events == result.events
        assert result.generation == 2
        assert result.dropped_generation == 1
        assert await checkpoint(deps.engine) == ((await checkpoint(deps.engine))[0], 2)
        assert await _schemas(deps) == ["proj_tenant_directory_g2"]
        assert "proj_tenant_directory_g2.tenant_directory" in await _view_target(deps)
        model = await read_model(deps.engine)
        assert model == await oracle(deps.engine)
        assert set(created) <= set(model)

    async def test_rebuild_with_a_changed_shape_replaces_the_view(self, deps: Deps) -> None:
        await TenantWriter(deps.store).seed(tenants=50)
        # Generation 2 stores the same columns in the opposite order: the view cannot simply be
        # replaced (PostgreSQL refuses to rename view columns), so it is dropped and re-created.
        reordered = MetaData()
        source = TENANT_DIRECTORY.metadata.tables["projection.tenant_directory"]
        columns = [
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in reversed(source.c)
        ]
        Table("tenant_directory", reordered, *columns, schema="projection")
        changed = dataclasses.replace(TENANT_DIRECTORY, metadata=reordered)
        await rebuild(changed, store=deps.store)
        assert await read_model(deps.engine) == await oracle(deps.engine)
        async with deps.engine.connect() as conn:
            columns = list(
                (await conn.execute(text("SELECT * FROM tenants.tenant_directory LIMIT 1"))).keys()
            )
        assert columns[0] == "last_position"
        await rebuild(TENANT_DIRECTORY, store=deps.store)
        assert await read_model(deps.engine) == await oracle(deps.engine)
        assert await _schemas(deps) == ["proj_tenant_directory_g3"]


class TestRebuildFailures:
    async def test_a_second_rebuild_is_refused_while_one_runs(self, deps: Deps) -> None:
        await TenantWriter(deps.store).seed(tenants=20)
        async with deps.engine.connect() as holder:
            assert await lease.try_lock(holder, lease.Lock.REBUILD, TENANT_DIRECTORY.name)
            with pytest.raises(RebuildError, match="already running"):
                await rebuild(TENANT_DIRECTORY, store=deps.store)
            await lease.unlock(holder, lease.Lock.REBUILD, TENANT_DIRECTORY.name)
        assert await _schemas(deps) == ["proj_tenant_directory_g1"]

    async def test_a_lease_never_handed_over_leaves_generation_one_serving(
        self, deps: Deps
    ) -> None:
        await TenantWriter(deps.store).seed(tenants=20)
        async with _live_runner(deps):
            await eventually(lambda: caught_up(deps.engine))
        before = await read_model(deps.engine)
        # A writer that ignores hand-over requests (an old runner, or a stuck one) holds the lease.
        async with deps.engine.connect() as stubborn:
            assert await lease.try_lock(stubborn, lease.Lock.LEASE, TENANT_DIRECTORY.name)
            with pytest.raises(LeaseTimeoutError):
                await rebuild(TENANT_DIRECTORY, store=deps.store, handover_timeout=0.5)
            await stubborn.invalidate()
        assert await _schemas(deps) == ["proj_tenant_directory_g1"]
        assert (await checkpoint(deps.engine))[1] == 1
        assert await read_model(deps.engine) == before


class TestNoSideEffects:
    async def test_rebuild_makes_no_outbound_call_and_publishes_nothing(
        self, deps: Deps, monkeypatch
    ) -> None:
        await TenantWriter(deps.store).seed(tenants=400)
        calls: list[str] = []

        def record(request: httpx.Request) -> httpx.Response:
            calls.append(str(request.url))
            return httpx.Response(204)

        sink = httpx.MockTransport(record)
        # Any HTTP client in the process, whatever its transport, ends up in the counting sink.
        monkeypatch.setattr(
            httpx.AsyncHTTPTransport,
            "handle_async_request",
            lambda _self, request: sink.handle_async_request(request),
        )
        monkeypatch.setattr(
            httpx.HTTPTransport,
            "handle_request",
            lambda _self, request: sink.handle_request(request),
        )
        connects: list[object] = []
        real_connect = socket.socket.connect

        def counting_connect(self: socket.socket, address: Any) -> None:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                connects.append(address)
            return real_connect(self, address)

        monkeypatch.setattr(socket.socket, "connect", counting_connect)
        counts = (
            "SELECT (SELECT count(*) FROM eventstore.outbox), (SELECT count(*) FROM eventstore.events), "
            "(SELECT count(*) FROM eventstore.tracking), (SELECT count(*) FROM eventstore.consumer_marks)"
        )
        async with deps.engine.connect() as conn:
            before = tuple((await conn.execute(text(counts))).one())
        result = await rebuild(TENANT_DIRECTORY, store=deps.store)
        async with deps.engine.connect() as conn:
            after = tuple((await conn.execute(text(counts))).one())
        assert result.events == before[1]
        assert calls == []
        assert connects == []
        assert after == before, "no event appended, no outbox row, no consumer effect"
        assert await read_model(deps.engine) == await oracle(deps.engine)
