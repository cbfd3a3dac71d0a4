"""Run the platform's roles (api, relay, projector, consumers) as tasks of one process.

Every role is `async (deps, stop) -> None` and returns once `stop` is set. SIGINT and SIGTERM set
`stop`; every role then finishes its work in hand and returns. A role that raises, or returns
while `stop` is not set, brings the whole process down with a non-zero exit code, so that a
supervisor (systemd, compose, Kubernetes) restarts it whole rather than leaving it half alive.
"""

import asyncio
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from metachat.bootstrap import Deps

log = structlog.get_logger()

ROLES = ("api", "relay", "projector", "consumers")
"""Every role, in start order: the API answers health checks while the others start."""

STOP_GRACE = 30.0
"""Seconds each role gets to finish after `stop` before it is cancelled."""

EXIT_OK = 0
EXIT_ROLE_FAILED = 1

RoleRunner = Callable[[Deps, asyncio.Event], Coroutine[Any, Any, None]]


def _runner(role: str, *, host: str, port: int, reuse_port: bool = False) -> RoleRunner:
    # Imported here so that a process running one role never loads the others' dependencies.
    if role == "api":
        from metachat.api.server import run_api

        async def api(deps: Deps, stop: asyncio.Event) -> None:
            await run_api(deps, stop, host=host, port=port, reuse_port=reuse_port)

        return api
    if role == "relay":
        from metachat.worker.relay_role import run_relay

        return run_relay
    if role == "projector":
        from metachat.worker.projector_role import run_projector

        return run_projector
    if role == "consumers":
        from metachat.worker.consumers_role import run_consumers

        return run_consumers
    raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")


def _install_signal_handlers(stop: asyncio.Event) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _on_signal, sig, stop)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signal support
            continue
        installed.append(sig)
    return installed


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("stop_requested", signal=sig.name)
    stop.set()


async def _supervise(tasks: dict[str, asyncio.Task[None]], stop: asyncio.Event) -> bool:
    """Wait for `stop` or for a role to end first; return False in the second case."""
    stopping = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait(
            {*tasks.values(), stopping}, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopping.cancel()
    early = [role for role, task in tasks.items() if task in done]
    if early and not stop.is_set():
        for role in early:
            log.error("role_ended_before_stop", role=role)
        stop.set()
        return False
    return True


async def _wind_down(tasks: dict[str, asyncio.Task[None]], grace: float) -> bool:
    """Give the roles `grace` seconds to return, cancel the rest; True if all ended cleanly."""
    _, late = await asyncio.wait(tasks.values(), timeout=grace)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    clean = True
    for role, task in tasks.items():
        if task in late:
            clean = False
            log.error("role_cancelled_after_grace", role=role, grace=grace)
        elif task.cancelled():
            clean = False
            log.error("role_cancelled", role=role)
        elif task.exception() is not None:
            clean = False
            log.error("role_crashed", role=role, exc_info=task.exception())
    return clean


async def run_roles(
    deps: Deps,
    roles: Sequence[str],
    *,
    port: int,
    host: str,
    stop: asyncio.Event,
    grace: float = STOP_GRACE,
    api_workers: int = 1,
    reuse_port: bool = False,
) -> int:
    """Run the roles until SIGINT/SIGTERM (or `stop`); return the process exit code.

    Returns 0 when every role stopped on request, 1 when a role crashed or ended on its own
    (the others are then stopped too). With `api_workers` > 1 and the `api` role, that many
    processes serve the API on the same port (`worker.api_workers`), supervised as a role.
    """
    chosen = list(dict.fromkeys(roles or ROLES))  # keep the order, drop repeats
    workers = api_workers > 1 and "api" in chosen
    shared = reuse_port or workers
    runners = {role: _runner(role, host=host, port=port, reuse_port=shared) for role in chosen}
    if workers:
        from metachat.worker.api_workers import run_api_workers

        async def more_api(_: Deps, stop: asyncio.Event) -> None:
            await run_api_workers(stop, extra=api_workers - 1, host=host, port=port, grace=grace)

        runners["api-workers"] = more_api
    installed = _install_signal_handlers(stop)
    log.info("roles_starting", roles=chosen, host=host, port=port)
    tasks = {
        role: asyncio.create_task(run(deps, stop), name=f"role-{role}")
        for role, run in runners.items()
    }
    try:
        healthy = await _supervise(tasks, stop)
        stopped_cleanly = await _wind_down(tasks, grace)
    finally:
        for sig in installed:
            asyncio.get_running_loop().remove_signal_handler(sig)
    code = EXIT_OK if healthy and stopped_cleanly else EXIT_ROLE_FAILED
    log.info("roles_stopped", roles=chosen, exit_code=code)
    return code
