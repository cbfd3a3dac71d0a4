"""The projector role: runs every registered projection, and rebuilds one on request."""

import asyncio

import structlog

from metachat.bootstrap import Deps
from metachat.conversations.partitions import run_partition_maintenance
from metachat.conversations.projections import CONVERSATION_LIST, CONVERSATION_MESSAGES
from metachat.database.engine import libpq_url
from metachat.eventstore.projection import (
    ProgressFn,
    Projection,
    ProjectionRunner,
    RebuildResult,
    Wakeup,
)
from metachat.eventstore.projection import rebuild as rebuild_generation
from metachat.tenants.projections import TENANT_DIRECTORY

log = structlog.get_logger()

PROJECTIONS: tuple[Projection, ...] = (TENANT_DIRECTORY, CONVERSATION_LIST, CONVERSATION_MESSAGES)
"""Every projection the platform maintains (the list the projector role and the CLI use)."""


def projection_named(name: str) -> Projection:
    """Return the registered projection called `name`, or raise KeyError naming the known ones."""
    for projection in PROJECTIONS:
        if projection.name == name:
            return projection
    known = ", ".join(p.name for p in PROJECTIONS)
    raise KeyError(f"unknown projection {name!r} (known: {known})")


def build_runners(deps: Deps) -> list[ProjectionRunner]:
    """One runner per registered projection."""
    return [
        ProjectionRunner(projection, store=deps.store, settings=deps.settings.projector)
        for projection in PROJECTIONS
    ]


async def run_projector(
    deps: Deps, stop: asyncio.Event, *, runners: list[ProjectionRunner] | None = None
) -> None:
    """Run every registered projection until `stop` is set.

    Pass `runners` (from `build_runners`) to keep a handle on them, e.g. to give
    `projection_status` their `held_at`; by default they are built here.
    """
    active = runners if runners is not None else build_runners(deps)
    wakeup = Wakeup(libpq_url(deps.database_url))
    for runner in active:
        wakeup.add(runner.wake)
    log.info("projector_started", projections=[r.projection.name for r in active])
    async with asyncio.TaskGroup() as group:
        group.create_task(wakeup.run(stop), name="projector-wakeup")
        # The hourly job that creates message partitions ahead (the handler covers the rest).
        group.create_task(
            run_partition_maintenance(deps.engine, CONVERSATION_MESSAGES, stop),
            name="projector-message-partitions",
        )
        for runner in active:
            group.create_task(runner.run(stop), name=f"projection-{runner.projection.name}")
    log.info("projector_stopped")


async def rebuild(deps: Deps, name: str, *, progress: ProgressFn | None = None) -> RebuildResult:
    """Rebuild the registered projection `name` with no downtime (see eventstore.projection)."""
    return await rebuild_generation(projection_named(name), store=deps.store, progress=progress)
