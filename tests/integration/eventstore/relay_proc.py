"""A relay as a real process, for the kill tests: `python -m tests.integration.eventstore.relay_proc`.

Settings come from the environment (METACHAT_DATABASE_URL, METACHAT_AMQP__EXCHANGE, ...), exactly
as `metachat run --role relay` will read them. SIGTERM stops it cleanly; SIGKILL is the test.
"""

import asyncio
import signal

from metachat.bootstrap import build
from metachat.kernel.logging import configure_logging
from metachat.settings import settings_from_process_env
from metachat.worker.relay_role import run_relay


async def _run() -> None:
    settings = settings_from_process_env()
    configure_logging(level=settings.log_level, json=settings.log_json)
    deps = await build(settings, pool_size=2)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await run_relay(deps, stop)
    finally:
        await deps.close()


def main() -> None:
    asyncio.run(_run())


if __name__ == "__main__":
    main()
