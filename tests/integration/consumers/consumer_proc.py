"""The consumers role as a real process, for the kill tests.

Run as `python -m tests.integration.consumers.consumer_proc`. Settings come from the environment
exactly as `metachat run --role consumers` reads them. SIGTERM stops it cleanly; SIGKILL is the test.
"""

import asyncio
import signal

from metachat.bootstrap import build
from metachat.kernel.logging import configure_logging
from metachat.settings import settings_from_process_env
from metachat.worker.consumers_role import run_consumers


async def _run() -> None:
    settings = settings_from_process_env()
    configure_logging(level=settings.log_level, json=settings.log_json)
    deps = await build(settings, pool_size=4)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await run_consumers(deps, stop)
    finally:
        await deps.close()


if __name__ == "__main__":
    asyncio.run(_run())
