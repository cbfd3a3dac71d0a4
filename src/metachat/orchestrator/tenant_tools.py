"""The tenant's own tools for one reply: its HTTP tools and its enabled MCP servers' tools.

`TenantTools.open` starts the reply's MCP servers (a server that fails to start is left out,
logged, and the reply goes on with the rest) and stops them when the reply ends. An MCP tool
reaches the model as `<server>__<tool>`; tenants' HTTP tool names cannot contain `__`, so the
names never collide.
"""

import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog

from metachat.llm.ports import ToolSpec
from metachat.orchestrator.http_tools import HttpToolRunner
from metachat.orchestrator.mcp import McpProcesses, McpSession
from metachat.orchestrator.tools import ExternalTool, ToolFunction
from metachat.tenants import LoadedAssistant, LoadedHttpTool

log = structlog.get_logger()
MAX_MCP_TOOLS = 32
"""Tools offered per server (a server listing more is cut: each costs prompt tokens)."""
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


class TenantTools:
    """Builds each reply's tenant tools; one per process, closed with the orchestrator."""

    def __init__(self, http: HttpToolRunner, mcp: McpProcesses) -> None:
        self.http = http
        self.mcp = mcp

    def _http_tool(self, loaded: LoadedHttpTool) -> ExternalTool:
        tool = loaded.tool
        spec = ToolSpec(name=tool.name, description=tool.description, parameters=tool.parameters)

        async def call(arguments: dict[str, Any]) -> str:
            return await self.http.call(loaded, arguments)

        return ExternalTool(spec=spec, call=call)

    @contextlib.asynccontextmanager
    async def open(self, loaded: LoadedAssistant) -> AsyncIterator[Sequence[ExternalTool]]:
        """The reply's tenant tools; its MCP servers run while the block does."""
        tools = [self._http_tool(t) for t in loaded.http_tools]
        sessions: list[McpSession] = []
        try:
            for server in loaded.mcp_servers:
                try:
                    session = await self.mcp.start(server)
                except Exception as exc:  # one broken server must not cost the reply
                    log.warning("mcp_server_unavailable", server=server.server.name, error=str(exc))
                    continue
                sessions.append(session)
                tools += await _listed(session)
            yield tools
        finally:
            for session in sessions:
                await self.mcp.stop(session)

    async def close(self) -> None:
        """Reap every MCP server still running."""
        await self.mcp.close()


async def _listed(session: McpSession) -> list[ExternalTool]:
    try:
        listed = await session.list_tools()
    except Exception as exc:  # a server that cannot list its tools offers none
        log.warning("mcp_tools_unavailable", server=session.name, error=str(exc))
        return []
    tools: list[ExternalTool] = []
    for item in listed[:MAX_MCP_TOOLS]:
        name = f"{session.name}__{item['name']}"
        if not _NAME.match(name):
            continue
        schema = item.get("inputSchema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            schema = _EMPTY_SCHEMA
        spec = ToolSpec(
            name=name, description=str(item.get("description", ""))[:1_000], parameters=schema
        )
        tools.append(ExternalTool(spec=spec, call=_mcp_call(session, item["name"])))
    return tools


def _mcp_call(session: McpSession, tool: str) -> ToolFunction:
    async def call(arguments: dict[str, Any]) -> str:
        return await session.call_tool(tool, arguments)

    return call


@contextlib.asynccontextmanager
async def no_tools(loaded: LoadedAssistant) -> AsyncIterator[Sequence[ExternalTool]]:
    """No tenant tools (the default of `OrchestratorDeps.tools`)."""
    del loaded
    yield ()
