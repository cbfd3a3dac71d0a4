"""More API processes on the same port: `metachat run --api-workers N`.

One event loop serves about one core's worth of requests. With `--api-workers N` the process
that runs the `api` role starts N - 1 more processes running only that role, every one of them
listening on the same address with `SO_REUSEPORT`, so the kernel spreads incoming connections
over them. Each child is a whole `metachat run --role api` (its own pools, caches and rate-limit
buckets; docs/running.md). They are supervised as one role: a child that exits before the stop
brings the whole process down (so the supervisor restarts it whole), and on stop every child
gets SIGTERM and the same grace as the roles.
"""

import asyncio
import contextlib
import signal
import sys

import structlog

log = structlog.get_logger()


async def run_api_workers(
    stop: asyncio.Event, *, extra: int, host: str, port: int, grace: float
) -> None:
    """Run `extra` more API processes until `stop` is set, then stop them."""
    command = [sys.executable, "-m", "metachat", "run", "--role", "api"]
    command += ["--host", host, "--port", str(port), "--reuse-port"]
    children = [await asyncio.create_subprocess_exec(*command) for _ in range(extra)]
    log.info("api_workers_started", pids=[c.pid for c in children], port=port)
    exits = [
        asyncio.create_task(child.wait(), name=f"api-worker-{child.pid}") for child in children
    ]
    stopping = asyncio.create_task(stop.wait(), name="api-workers-stop")
    try:
        await asyncio.wait({*exits, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        _, late = await asyncio.wait(exits, timeout=grace)
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
        await asyncio.gather(*exits, return_exceptions=True)
        log.info("api_workers_stopped", exit_codes=[c.returncode for c in children], late=len(late))
    if not stop.is_set():
        ended = {c.pid: c.returncode for c in children if c.returncode is not None}
        raise RuntimeError(f"an API worker process ended on its own: {ended}")
