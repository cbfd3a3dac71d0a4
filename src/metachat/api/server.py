"""Run the API with uvicorn inside an asyncio program that owns the signals."""

import asyncio
import contextlib
import socket
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


def _shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (`SO_REUSEPORT`, Linux and BSDs)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def _serve(server: uvicorn.Server, sockets: list[socket.socket] | None) -> None:
    try:
        await server.serve(sockets=sockets)
    except SystemExit as exc:
        # uvicorn calls sys.exit(1) when it cannot bind; inside a task that would tear the event
        # loop down past the other roles, so it becomes an ordinary error of this role.
        raise RuntimeError(f"the HTTP server could not start (exit code {exc.code})") from exc


async def run_api(
    deps: Deps, stop: asyncio.Event, *, host: str, port: int, reuse_port: bool = False
) -> None:
    """Serve HTTP until `stop` is set, then finish in-flight requests and return.

    With `reuse_port`, other processes may listen on the same address (`--api-workers`).

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
    sockets = [_shared_socket(host, port)] if reuse_port else None
    serving = asyncio.create_task(_serve(server, sockets), name="uvicorn")
    stopping = asyncio.create_task(stop.wait(), name="api-stop")
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    log.info("api_stopping", host=host, port=port)
    server.should_exit = True
    stopping.cancel()
    await serving
    if not stop.is_set():
        raise RuntimeError(f"the HTTP server on {host}:{port} stopped unexpectedly")
