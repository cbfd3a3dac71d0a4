"""A client of MCP servers over stdio (JSON-RPC 2.0, one message per line), and their processes.

A server is the operator's registered command, started as a subprocess with a clean
environment: `PATH` and the variables its registration declares, with the tenant's values;
never the platform's own environment (its database URL, its secret key). Every request has a
timeout; a server that does not answer in time is killed. `tools/list` is read page by page
(`nextCursor`), within bounds a server that pages for ever cannot escape.

One process per (reply, server): started when a reply may call tools, stopped when the reply
ends (see architecture/decisions/0012-tools.md). `McpProcesses` knows every process running, so
that the orchestrator's `close` reaps them all on shutdown.
"""

import asyncio
import contextlib
import itertools
import os
from typing import Any

import msgspec
import structlog

from metachat.tenants import LoadedMcpServer

log = structlog.get_logger()
PROTOCOL_VERSION = "2025-06-18"
_LINE_LIMIT = 4 * 1024 * 1024
_STOP_WAIT = 2.0
_METHOD_NOT_FOUND = -32601
MAX_TOOL_PAGES = 64
"""Pages of `tools/list` read from one server; more is a server that never stops paging."""


class McpError(RuntimeError):
    """The server failed, answered an error, or did not answer in time."""


class McpSession:
    """One running server: requests in order, answers matched by id."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, timeout: float) -> None:
        self.name = name
        self._process = process
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def _send(self, message: dict[str, Any]) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.is_closing():
            raise McpError(f"{self.name} is not running")
        stdin.write(msgspec.json.encode({"jsonrpc": "2.0", **message}) + b"\n")
        await stdin.drain()

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification (no answer)."""
        await self._send({"method": method, **({"params": params} if params else {})})

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send a request and wait (bounded) for its answer's result."""
        # One request at a time: a reply's tool calls run in order anyway, and the lock keeps
        # lines of two requests from interleaving.
        async with self._lock:
            number = next(self._ids)
            await self._send({"id": number, "method": method, "params": params or {}})
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._answer(number)
            except TimeoutError:
                await self.close()
                raise McpError(f"{self.name} did not answer {method} in time") from None

    async def _answer(self, number: int) -> Any:
        stdout = self._process.stdout
        if stdout is None:
            raise McpError(f"{self.name} has no output")
        while True:
            line = await stdout.readline()
            if not line:
                raise McpError(f"{self.name} exited")
            try:
                message = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue  # not a message: a server that logs to stdout by mistake
            if not isinstance(message, dict):
                continue
            if "method" in message and "id" in message:
                await self._refuse(message)  # a request of the server's (sampling, roots…)
            elif message.get("id") == number:
                if "error" in message:
                    error = message["error"] or {}
                    raise McpError(f"{self.name}: {error.get('message', 'error')}")
                return message.get("result")

    async def _refuse(self, message: dict[str, Any]) -> None:
        if message["method"] == "ping":
            await self._send({"id": message["id"], "result": {}})
            return
        error = {"code": _METHOD_NOT_FOUND, "message": "not supported by this client"}
        await self._send({"id": message["id"], "error": error})

    async def initialize(self) -> None:
        """The handshake: the server's protocol version is accepted whatever it is."""
        await self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "metachat", "version": "1"},
            },
        )
        await self.notify("notifications/initialized")

    async def list_tools(self) -> list[dict[str, Any]]:
        """The server's tools, every page of them (`nextCursor` until none comes).

        Bounded: at most `MAX_TOOL_PAGES` pages, no cursor answered twice, and every page
        within one timeout together. A server past a bound raises `McpError` rather than
        giving a list cut at an arbitrary page: a list that is not whole is not offered.
        """
        try:
            async with asyncio.timeout(self._timeout):
                tools = await self._tool_pages()
        except TimeoutError:
            await self.close()
            raise McpError(f"{self.name} did not list its tools in time") from None
        return [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]

    async def _tool_pages(self) -> list[Any]:
        tools: list[Any] = []
        cursors: set[str] = set()
        params: dict[str, Any] = {}
        for _ in range(MAX_TOOL_PAGES):
            result = await self.request("tools/list", params)
            result = result if isinstance(result, dict) else {}
            page = result.get("tools")
            tools += page if isinstance(page, list) else []
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str):  # absent (or null): that was the last page
                return tools
            if cursor in cursors:  # it would page in a circle
                raise McpError(f"{self.name} gave the same tools/list cursor twice")
            cursors.add(cursor)
            params = {"cursor": cursor}
        raise McpError(f"{self.name} lists its tools in more than {MAX_TOOL_PAGES} pages")

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        """Call a tool; its text content, or raise with it when the tool reports an error."""
        result = await self.request("tools/call", {"name": name, "arguments": arguments})
        if not isinstance(result, dict):
            raise McpError(f"{self.name} answered no result")
        parts = [
            str(item.get("text", ""))
            for item in result.get("content", [])
            if isinstance(item, dict) and item.get("type") == "text"
        ]
        text = "\n".join(parts)
        if result.get("isError"):
            raise McpError(text or f"{name} failed")
        return text

    async def close(self) -> None:
        """Close stdin, wait briefly, then terminate and kill; always reaps the process."""
        process = self._process
        if process.returncode is not None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        for stop in (None, process.terminate, process.kill):
            if stop is not None:
                with contextlib.suppress(ProcessLookupError):
                    stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), _STOP_WAIT)
                return


class McpProcesses:
    """Starts servers for replies and reaps them; one per process (the orchestrator's)."""

    def __init__(self, *, timeout: float = 10.0, path: str = os.defpath) -> None:
        self.timeout = timeout
        self._path = path
        self._running: set[McpSession] = set()

    @property
    def running(self) -> int:
        """How many servers are running now."""
        return len(self._running)

    async def start(self, loaded: LoadedMcpServer) -> McpSession:
        """Start the server with a clean environment and complete the handshake."""
        server = loaded.server
        # The system's default PATH, not the platform's: register commands by absolute path.
        env = {"PATH": self._path}
        env |= {name: loaded.env[name] for name in server.env_from_tenant if name in loaded.env}
        process = await asyncio.create_subprocess_exec(
            server.command,
            *server.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # never read: a full pipe would stall the server
            env=env,
            limit=_LINE_LIMIT,
            start_new_session=True,  # the platform's signals (Ctrl-C) are not the server's
        )
        session = McpSession(server.name, process, self.timeout)
        self._running.add(session)
        try:
            await session.initialize()
        except BaseException:
            await self.stop(session)
            raise
        log.info("mcp_server_started", server=server.name, pid=process.pid)
        return session

    async def stop(self, session: McpSession) -> None:
        """Stop one server and forget it."""
        self._running.discard(session)
        await session.close()

    async def close(self) -> None:
        """Reap every server still running (shutdown)."""
        running, self._running = list(self._running), set()
        await asyncio.gather(*(s.close() for s in running), return_exceptions=True)
