"""R10, R11, R15: the projection runner's checkpoint, lease and heartbeat, on the real PostgreSQL."""

import asyncio
import contextlib
import os
import random

import msgspec
import pytest
from sqlalchemy import make_url, text

from metachat.bootstrap import Deps
from metachat.database.engine import create_engine
from metachat.eventstore.postgres import PostgresEventStore
from metachat.eventstore.projection import (
    CheckpointConflictError,
    ProjectionRunner,
    ProjectionStatus,
    load_checkpoint,
    process_batch,
    projection_status,
)
from metachat.settings import ProjectorSettings
from metachat.tenants.projections import TENANT_DIRECTORY
from metachat.worker.projector_role import build_runners, run_projector
from tests.integration.projections.support import (
    TenantWriter,
    all_positions,
    caught_up,
    checkpoint,
    head,
    instrumented,
    oracle,
    read_model,
)
from tests.waiting import eventually

KILL_RUNS = int(os.environ.get("MC_PROJECTION_KILLS", "100" if os.environ.get("MC_SOAK") else "30"))
BATCH = 20
FAST = ProjectorSettings(batch_size=BATCH, poll_interval=0.02)
RUNNER_APP = "mc-projection-runner"


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _terminate_runner_backends(deps: Deps) -> int:
    async with deps.engine.connect() as conn:
        killed = await conn.scalars(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :app AND datname = current_database()"
            ),
            {"app": RUNNER_APP},
        )
        return sum(1 for k in killed if k)


class Restarts:
    """Runner incarnations over one store: what each applied, and how much of it was seen before."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.seen: set[int] = set()
        self.reprocessed: list[int] = []
        self.terminated = 0

    async def incarnation(self, deps: Deps, rng: random.Random | None) -> None:
        """Run one runner; kill it at a random point (rng), or let it catch up (None)."""
        applied: list[int] = []
        runner = ProjectionRunner(
            instrumented(TENANT_DIRECTORY, applied), store=self.store, settings=FAST
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        if rng is None:
            await eventually(lambda: caught_up(deps.engine))
            stop.set()
            await task
        else:
            await asyncio.sleep(rng.uniform(0.02, 0.25))
            if rng.random() < 0.5:  # the server side dies first: the in-flight batch aborts
                self.terminated += await _terminate_runner_backends(deps)
                await asyncio.sleep(rng.uniform(0, 0.01))
            await _stop(task)
        again = len(applied) - len(set(applied) - self.seen)
        self.reprocessed.append(again)
        self.seen |= set(applied)
        assert again <= BATCH, f"a restart re-applied {again} events (batch {BATCH})"


class TestCheckpointIsLastProcessedPosition:
    async def test_killed_anywhere_reprocesses_at_most_one_batch_and_misses_nothing(
        self, deps: Deps
    ) -> None:
        rng = random.Random(int(os.environ.get("MC_SEED", "10")))
        writer = TenantWriter(deps.store)
        await writer.seed(tenants=40)
        # The runner gets its own engine, named, so that its backends can be killed alone.
        url = make_url(deps.database_url).update_query_dict({"application_name": RUNNER_APP})
        engine = create_engine(url.render_as_string(hide_password=False), pool_size=2)
        restarts = Restarts(PostgresEventStore(engine, deps.registry))
        stop_writers = asyncio.Event()
        writers = [
            asyncio.create_task(writer.churn(stop_writers, random.Random(i))) for i in range(4)
        ]
        try:
            for _ in range(KILL_RUNS):
                await restarts.incarnation(deps, rng)
            stop_writers.set()
            await asyncio.gather(*writers)
            await restarts.incarnation(deps, None)
        finally:
            stop_writers.set()
            await asyncio.gather(*writers, return_exceptions=True)
            await engine.dispose()
        missed = await all_positions(deps.engine) - restarts.seen
        print(
            f"\nR10: {KILL_RUNS} kills ({restarts.terminated} backend terminations), events={len(restarts.seen)}, "
            f"re-applied per restart max={max(restarts.reprocessed)} total={sum(restarts.reprocessed)}, "
            f"missed={len(missed)}"
        )
        assert missed == set()
        assert await read_model(deps.engine) == await oracle(deps.engine)


class TestSingleWriter:
    async def test_two_instances_exactly_one_advances_and_the_other_takes_over(
        self, deps: Deps
    ) -> None:
        writer = TenantWriter(deps.store)
        applied_a: list[int] = []
        applied_b: list[int] = []
        a = ProjectionRunner(
            instrumented(TENANT_DIRECTORY, applied_a), store=deps.store, settings=FAST
        )
        b = ProjectionRunner(
            instrumented(TENANT_DIRECTORY, applied_b), store=deps.store, settings=FAST
        )
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        task_a = asyncio.create_task(a.run(stop_a))
        await eventually(lambda: _all_active([a]))
        task_b = asyncio.create_task(b.run(stop_b))
        for _ in range(5):
            await writer.seed(tenants=20, per_tx=10)
            await asyncio.sleep(0.05)
        await eventually(lambda: caught_up(deps.engine))
        assert applied_a, "the active instance advanced"
        assert applied_b == [], "the passive instance stayed passive"
        assert a.active
        assert not b.active
        handed_over_at = (await checkpoint(deps.engine))[0]

        stop_a.set()
        await task_a
        await writer.seed(tenants=30, per_tx=10, seed=2)

        async def b_took_over() -> bool:
            return b.active and await caught_up(deps.engine)

        await eventually(b_took_over)
        stop_b.set()
        await task_b
        assert applied_b, "the passive instance took over"
        assert min(applied_b) > handed_over_at, "B never re-applied A's committed work"
        assert await read_model(deps.engine) == await oracle(deps.engine)

    async def test_concurrent_checkpoint_write_is_detected_and_rolled_back(
        self, deps: Deps
    ) -> None:
        await TenantWriter(deps.store).seed(tenants=10)
        engine = deps.engine
        async with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                await conn.execution_options(schema_translate_map=TENANT_DIRECTORY.translate(1))
            async with first.begin():
                start = await load_checkpoint(first, TENANT_DIRECTORY.name)
            # Both start from the same checkpoint, as two writers without a lease would.
            results = await asyncio.gather(
                process_batch(first, TENANT_DIRECTORY, deps.store.reader(), start, limit=25),
                process_batch(second, TENANT_DIRECTORY, deps.store.reader(), start, limit=25),
                return_exceptions=True,
            )
        assert sum(isinstance(r, CheckpointConflictError) for r in results) == 1
        winner = next(r for r in results if not isinstance(r, BaseException))
        assert (await checkpoint(engine))[0] == winner[0].position
        model = await read_model(engine)
        assert max(row[4] for row in model.values()) <= winner[0].position, (
            "the loser's effects were rolled back"
        )

    async def test_a_stale_checkpoint_never_writes(self, deps: Deps) -> None:
        await TenantWriter(deps.store).seed(tenants=4)
        async with deps.engine.connect() as conn:
            await conn.execution_options(schema_translate_map=TENANT_DIRECTORY.translate(1))
            async with conn.begin():
                start = await load_checkpoint(conn, TENANT_DIRECTORY.name)
            await process_batch(conn, TENANT_DIRECTORY, deps.store.reader(), start, limit=5)
            with pytest.raises(CheckpointConflictError):
                await process_batch(conn, TENANT_DIRECTORY, deps.store.reader(), start, limit=50)
        assert (await checkpoint(deps.engine))[0] == 5


def _directory(statuses: list[ProjectionStatus]) -> ProjectionStatus:
    # Other projections are installed too; these tests drive the tenant directory.
    (status,) = [s for s in statuses if s.name == "tenant_directory"]
    return status


class TestHeartbeat:
    async def test_idle_loops_beat_without_moving_the_checkpoint(self, deps: Deps) -> None:
        await TenantWriter(deps.store).seed(tenants=3)
        before = _directory(await projection_status(deps.engine))
        assert before.lag_events == before.head > 0
        assert before.heartbeat_at is None
        assert before.lag_seconds > 0
        runner = ProjectionRunner(TENANT_DIRECTORY, store=deps.store, settings=FAST)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await eventually(lambda: caught_up(deps.engine))
        first = _directory(await projection_status(deps.engine, runners=[runner]))

        async def beat_again() -> bool:
            now = _directory(await projection_status(deps.engine))
            return (
                now.heartbeat_at is not None
                and first.heartbeat_at is not None
                and now.heartbeat_at > first.heartbeat_at
            )

        await eventually(beat_again)
        idle = _directory(await projection_status(deps.engine))
        stop.set()
        await task
        assert first.lag_events == 0
        assert first.lag_seconds == 0
        assert first.held_at is None
        assert idle.position == first.position == await head(deps.engine), (
            "idle beats never move the checkpoint"
        )
        assert idle.generation == 1
        assert idle.name == "tenant_directory"
        stopped = _directory(await projection_status(deps.engine))
        await asyncio.sleep(0.1)
        later = _directory(await projection_status(deps.engine))
        assert later.heartbeat_at == stopped.heartbeat_at, "a stopped loop beats no more"
        assert later.heartbeat_age_seconds is not None
        assert stopped.heartbeat_age_seconds is not None
        assert later.heartbeat_age_seconds > stopped.heartbeat_age_seconds


class TestProjectorRole:
    async def test_run_projector_is_woken_by_notify_and_stops_on_request(self, deps: Deps) -> None:
        # A poll interval far beyond the wait below: only the NOTIFY wake-up can explain catching up.
        slow = msgspec.structs.replace(
            deps.settings, projector=ProjectorSettings(poll_interval=300.0)
        )
        role_deps = msgspec.structs.replace(deps, settings=slow)
        runners = build_runners(role_deps)
        stop = asyncio.Event()
        task = asyncio.create_task(run_projector(role_deps, stop, runners=runners))
        await eventually(lambda: _all_active(runners), within=10)
        writer = TenantWriter(deps.store)
        for i in range(3):
            await writer.create_tenant(f"woken-{i}")
            await eventually(lambda: caught_up(deps.engine), within=10)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert await read_model(deps.engine) == await oracle(deps.engine)
        status = _directory(await projection_status(deps.engine))
        assert status.lag_events == 0


async def _all_active(runners: list[ProjectionRunner]) -> bool:
    return all(r.active for r in runners)
