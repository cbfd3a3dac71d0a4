"""Run the API with uvicorn inside an asyncio program that owns the signals."""

import asyncio
import contextlib
from collections.abc import Iterator

import structlog
import uvicorn

from metachat.api.app import create_app
from metachat.bootstrap import Deps

log = structlog.get_logger()


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to the process runner.

    uvicorn's `serve()` installs its own handlers and re-raises captured signals on exit; the
    role runner already turns the signals into its `stop` event, which ends this server too.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as exc:
        # uvicorn calls sys.exit(1) when it cannot bind; inside a task that would tear the event
        # loop down past the other roles, so it becomes an ordinary error of this role.
        raise RuntimeError(f"the HTTP server could not start (exit code {exc.code})") from exc


async def run_api(deps: Deps, stop: asyncio.Event, *, host: str, port: int) -> None:
    """Serve HTTP until `stop` is set, then finish in-flight requests and return.

    Raises:
        RuntimeError: the server stopped on its own (for example, the port was taken).
    """
    config = uvicorn.Config(
        create_app(deps),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(_serve(server), name="uvicorn")
    stopping = asyncio.create_task(stop.wait(), name="api-stop")
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    log.info("api_stopping", host=host, port=port)
    server.should_exit = True
    stopping.cancel()
    await serving
    if not stop.is_set():
        raise RuntimeError(f"the HTTP server on {host}:{port} stopped unexpectedly")
