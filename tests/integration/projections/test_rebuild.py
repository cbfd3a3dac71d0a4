"""R12: a zero-downtime rebuild under reads and writes; a rebuild that changes the model's shape."""

import asyncio
import dataclasses
import os
import time
import uuid

from sqlalchemy import Column, MetaData, Table, text

from metachat.bootstrap import Deps
from metachat.eventstore.projection import ProjectionRunner, RebuildProgress, RebuildResult, rebuild
from metachat.tenants.projections import TENANT_DIRECTORY
from tests.integration.projections.reader import ReaderProcess
from tests.integration.projections.support import (
    TenantWriter,
    caught_up,
    checkpoint,
    live_runner,
    oracle,
    read_model,
    schemas,
    view_target,
)
from tests.waiting import eventually

REBUILD_TENANTS = int(os.environ.get("MC_REBUILD_TENANTS", "4000"))  # x 5 events each


async def _positive(value: int) -> bool:
    return value > 0


async def _writer(writer: TenantWriter, stop: asyncio.Event, created: list[uuid.UUID]) -> None:
    while not stop.is_set():
        created.append(await writer.create_tenant(f"during-{len(created)}"))
        await asyncio.sleep(0.03)


@dataclasses.dataclass
class Observed:
    """What happened around one rebuild under load."""

    result: RebuildResult
    reports: list[RebuildProgress]
    live_positions: list[tuple[str, int | None]]
    reads: int = 0
    reads_during: int = 0
    reads_per_s: float = 0.0
    errors: list[str] = dataclasses.field(default_factory=list)
    bad: list[str] = dataclasses.field(default_factory=list)
    created: list[uuid.UUID] = dataclasses.field(default_factory=list)


async def _rebuild_under_load(
    deps: Deps, writer: TenantWriter, runner: ProjectionRunner
) -> Observed:
    """Rebuild while a reader process reads ~50/s and a writer adds tenants the live runner projects."""
    reader = ReaderProcess(deps.database_url, await read_model(deps.engine))
    await eventually(lambda: _positive(reader.reads))
    stop_writer, created = asyncio.Event(), list[uuid.UUID]()
    writing = asyncio.create_task(_writer(writer, stop_writer, created))
    reports: list[RebuildProgress] = []
    live_positions: list[tuple[str, int | None]] = []

    def progress(report: RebuildProgress) -> None:
        reports.append(report)
        live_positions.append((report.phase, runner.position))

    try:
        await asyncio.sleep(0.2)  # reads and writes on generation 1 first
        reads_before, started = reader.reads, time.monotonic()
        result = await rebuild(TENANT_DIRECTORY, store=deps.store, progress=progress)
        reads_during, seconds = reader.reads - reads_before, time.monotonic() - started
        await asyncio.sleep(0.3)  # keep reading and writing on the new generation
    finally:
        stop_writer.set()
        await writing
        reads, errors, bad = await reader.finish()
    return Observed(
        result=result,
        reports=reports,
        live_positions=live_positions,
        reads=reads,
        reads_during=reads_during,
        reads_per_s=reads_during / seconds,
        errors=errors,
        bad=bad,
        created=created,
    )


class TestZeroDowntimeRebuild:
    async def test_readers_never_see_an_empty_or_partial_model(self, deps: Deps) -> None:
        writer = TenantWriter(deps.store)
        await writer.seed(tenants=REBUILD_TENANTS)
        async with live_runner(deps.store) as runner:
            await eventually(lambda: caught_up(deps.engine))
            assert await read_model(deps.engine) == await oracle(deps.engine)
            seen = await _rebuild_under_load(deps, writer, runner)
            await eventually(lambda: caught_up(deps.engine))
            assert runner.active, "the live runner resumed after the switch"
        result = seen.result
        print(
            f"\nR12: rebuilt {result.events} events at {result.events_per_s:,.0f} events/s; "
            f"hand-over {result.handover_seconds * 1000:.1f} ms, switch {result.switch_seconds * 1000:.1f} ms; "
            f"{seen.reads} reads ({seen.reads_during} during the rebuild: {seen.reads_per_s:.0f}/s), "
            f"{len(seen.created)} tenants created meanwhile"
        )
        assert seen.errors == []
        assert seen.bad == []
        assert seen.reads_during > 0
        replay = [position for phase, position in seen.live_positions if phase == "replay"]
        assert replay[0] is not None
        assert replay[-1] is not None
        assert replay[-1] > replay[0], (
            "the live runner kept advancing generation 1 during the replay"
        )
        assert [r.events for r in seen.reports] == sorted(r.events for r in seen.reports)
        assert (seen.reports[-1].phase, seen.reports[-1].events) == ("done", result.events)
        assert (result.generation, result.dropped_generation) == (2, 1)
        assert (await checkpoint(deps.engine))[1] == 2
        assert await schemas(deps.engine) == ["proj_tenant_directory_g2"]
        assert "proj_tenant_directory_g2.tenant_directory" in await view_target(deps.engine)
        model = await read_model(deps.engine)
        assert model == await oracle(deps.engine)
        assert set(seen.created) <= set(model)

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
        assert await schemas(deps.engine) == ["proj_tenant_directory_g3"]
