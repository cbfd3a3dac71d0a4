"""`metachat run`: every role in one process, or only the roles named with --role."""

import asyncio
import sys
from collections.abc import Callable

import click

from metachat.cli.common import build_or_exit, load
from metachat.settings import Settings
from metachat.worker.roles import ROLES, run_roles


async def _run(settings: Settings, roles: tuple[str, ...], *, host: str, port: int) -> int:
    deps = await build_or_exit(settings)
    try:
        return await run_roles(deps, roles, host=host, port=port, stop=asyncio.Event())
    finally:
        await deps.close()


@click.command("run")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    help="A role to run (repeat for several). Default: all of them.",
)
@click.option("--port", type=click.IntRange(1, 65535), help="HTTP port [default: METACHAT_PORT]")
@click.option("--host", help="HTTP bind address [default: METACHAT_HOST]")
def command(roles: tuple[str, ...], port: int | None, host: str | None) -> None:
    """Run the platform: api, relay, projector and consumers, until SIGINT or SIGTERM."""
    settings = load()
    # uvloop where it exists (not on Windows): measured about 10 % less CPU per API request
    # (docs/benchmarks.md). uvicorn's own `loop="auto"` does not apply, the loop is ours.
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        code = runner.run(
            _run(settings, roles or ROLES, host=host or settings.host, port=port or settings.port)
        )
    sys.exit(code)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # optional: absent on Windows
    except ImportError:
        return None
    return uvloop.new_event_loop
