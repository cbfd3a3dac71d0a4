"""`metachat projections`: lag and liveness of every projection; zero-downtime rebuilds."""

import time
from datetime import datetime

import click
import msgspec

from metachat.bootstrap import Deps
from metachat.cli.common import with_deps
from metachat.eventstore.projection import (
    LeaseTimeoutError,
    ProjectionNotInstalledError,
    ProjectionStatus,
    RebuildError,
    RebuildProgress,
    RebuildResult,
    projection_status,
)
from metachat.worker import projector_role

_HEADERS = ("name", "position", "head", "lag", "lag_s", "heartbeat", "generation")
_PROGRESS_EVERY = 1.0


@click.group("projections")
def group() -> None:
    """Read models built from the event store."""


def _age(at: datetime | None, seconds: float | None) -> str:
    if at is None or seconds is None:
        return "never"
    return f"{at:%H:%M:%S} ({seconds:.0f}s ago)"


def _table(rows: list[ProjectionStatus]) -> str:
    cells = [
        (
            s.name,
            str(s.position),
            str(s.head),
            str(s.lag_events),
            f"{s.lag_seconds:.1f}",
            _age(s.heartbeat_at, s.heartbeat_age_seconds),
            str(s.generation),
        )
        for s in rows
    ]
    widths = [max(len(r[i]) for r in [_HEADERS, *cells]) for i in range(len(_HEADERS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [_HEADERS, *cells]
    )


@group.command("status")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per projection, one per line."
)
def status(as_json: bool) -> None:
    """Position, head, lag and last heartbeat of every projection."""

    async def go(deps: Deps) -> list[ProjectionStatus]:
        return await projection_status(deps.engine)

    rows = with_deps(go)
    if as_json:
        for row in rows:
            click.echo(msgspec.json.encode(row).decode())
    elif rows:
        click.echo(_table(rows))
    else:
        click.echo("no projections installed (run `metachat db upgrade`)")


class _Progress:
    """Prints a progress line at most once a second, and at every phase change."""

    def __init__(self) -> None:
        self._last = 0.0
        self._phase = ""

    def __call__(self, report: RebuildProgress) -> None:
        now = time.monotonic()
        if report.phase == self._phase and now - self._last < _PROGRESS_EVERY:
            return
        self._last, self._phase = now, report.phase
        share = 100 * report.position / report.head if report.head else 100.0
        click.echo(
            f"{report.name} g{report.generation} [{report.phase}] {report.events} events, "
            f"position {report.position}/{report.head} ({share:.0f}%), "
            f"{report.events_per_s:,.0f} events/s",
            err=True,
        )


@group.command("rebuild")
@click.argument("name")
def rebuild(name: str) -> None:
    """Rebuild NAME into a new generation while the current one serves, then switch to it."""
    try:
        projector_role.projection_named(name)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from exc

    async def go(deps: Deps) -> RebuildResult:
        return await projector_role.rebuild(deps, name, progress=_Progress())

    try:
        result = with_deps(go)
    except (RebuildError, LeaseTimeoutError, ProjectionNotInstalledError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"rebuilt {result.name} into generation {result.generation}: {result.events} events "
        f"in {result.seconds:.2f} s ({result.events_per_s:,.0f} events/s), up to position "
        f"{result.position}; hand-over {result.handover_seconds * 1000:.0f} ms, "
        f"switch {result.switch_seconds * 1000:.1f} ms"
    )
