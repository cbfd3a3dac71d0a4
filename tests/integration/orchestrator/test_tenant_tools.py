"""Tenants' tools in a real reply: an HTTP tool and an MCP server run as a real subprocess.

Real PostgreSQL and RabbitMQ; OpenAI faked at the HTTP boundary, streaming the tool call. The
HTTP tool's receiver is a local server on 127.0.0.1 (allowed as an operator would allow a host);
the MCP server is `mcp_server.py`, registered as the CLI does, started by the orchestrator.
"""

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.orchestrator.events import ToolCalled
from metachat.orchestrator.http_tools import HttpToolRunner
from metachat.orchestrator.mcp import MAX_TOOL_PAGES, McpError, McpProcesses, McpSession
from metachat.orchestrator.tenant_tools import TenantTools
from metachat.tenants import AssistantDeps, LoadedMcpServer, mcp
from metachat.tenants.assistant.tools import configure_http_tool, enable_mcp_server
from metachat.tenants.commands import HttpTool, RegisterMcpServer
from tests.integration.orchestrator.support import World, a_world
from tests.integration.orchestrator.test_real_providers import (
    OPENAI_KEY,
    _key,
    _one_reply,
    _text_round,
    _use_http,
)
from tests.unit.llm.fakes import FakeAPI, openai_chunk, openai_stream

SERVER = Path(__file__).with_name("mcp_server.py")
TOOL_TOKEN = "tool-secret-91b2c7"  # noqa: S105 - a fake token
SHOP_TOKEN = "shop-credential-3e8d"  # noqa: S105 - a fake credential


def _calls(name: str, arguments: dict[str, Any]) -> Any:
    call = {"index": 0, "id": "call_T1", "type": "function"}
    return openai_stream(
        [
            openai_chunk({"role": "assistant", "content": None, "tool_calls": [
                {**call, "function": {"name": name, "arguments": ""}}
            ]}),
            openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": json.dumps(arguments)}}]}),
            openai_chunk({}, finish_reason="tool_calls"),
            openai_chunk(None, usage=(100, 10)),
        ]
    )  # fmt: skip


@contextlib.asynccontextmanager
async def _receiver() -> AsyncIterator[tuple[int, list[bytes]]]:
    """An HTTP/1.1 server on 127.0.0.1 that records each request and answers JSON."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        body = b'{"order": "A-17", "status": "in transit"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, seen


def _assistant(world: World) -> AssistantDeps:
    return AssistantDeps(store=world.deps.store, box=world.deps.secrets)


async def _openai_world(world: World) -> None:
    await _key(world, "openai", OPENAI_KEY)
    await world.configure(
        burst_window_ms=0, retrieval=False, primary={"kind": "openai", "model": "gpt-4o"}
    )


def _allow_loopback(world: World) -> TenantTools:
    """The orchestrator's tools as an operator allowing 127.0.0.1 would have them."""
    tools = TenantTools(HttpToolRunner(["127.0.0.1"]), world.orchestrator.tools.mcp)
    world.reply_deps = msgspec.structs.replace(world.reply_deps, tools=tools.open)
    return tools


async def _tool_events(world: World, reply: Any) -> list[ToolCalled]:
    return [r.event for r in await world.usage(reply.message_id) if isinstance(r.event, ToolCalled)]


class TestHttpTool:
    async def test_the_model_calls_it_with_its_auth_and_the_secret_is_in_no_event(
        self, world: World
    ) -> None:
        await _openai_world(world)
        _allow_loopback(world)
        async with _receiver() as (port, seen):
            tool = msgspec.convert(
                {
                    "name": "order_status",
                    "description": "An order's status.",
                    "url": f"http://127.0.0.1:{port}/orders/{{order_id}}",
                    "parameters": {
                        "type": "object",
                        "properties": {"order_id": {"type": "string"}},
                        "required": ["order_id"],
                    },
                    "auth": "header",
                    "header_name": "X-Shop-Key",
                },
                HttpTool,
            )
            await configure_http_tool(
                world.tenant_id, tool, TOOL_TOKEN, deps=_assistant(world),
                actor=Actor.operator("test"), correlation_id=uuid7(),
            )  # fmt: skip
            api = FakeAPI(
                _calls("order_status", {"order_id": "A 17"}), _text_round("It is in transit.")
            )
            _use_http(world, api)
            _, reply = await _one_reply(world, "Where is my order A 17?")
        (request,) = seen
        assert request.startswith(b"GET /orders/A%2017 HTTP/1.1")
        assert f"x-shop-key: {TOOL_TOKEN}".encode() in request.lower()
        offered = [t["function"]["name"] for t in api.body(0)["tools"]]
        assert "order_status" in offered
        (called,) = await _tool_events(world, reply)
        assert (called.tool, called.error) == ("order_status", None)
        assert "in transit" in called.result
        async with world.deps.engine.connect() as conn:
            everything = await conn.exec_driver_sql(
                "SELECT string_agg(payload::text, '') FROM eventstore.events WHERE tenant_id = %(t)s",
                {"t": world.tenant_id},
            )
            assert TOOL_TOKEN not in everything.scalar_one()


def _server(name: str, *args: str, env: tuple[str, ...] = ()) -> RegisterMcpServer:
    """`mcp_server.py` registered under `name`, with its arguments (how it pages)."""
    return RegisterMcpServer(
        name=name, command=sys.executable, args=(str(SERVER), *args), env_from_tenant=env
    )


async def _enabled(world: World, *args: str) -> str:
    """Register `mcp_server.py` as the CLI does and enable it for the world's tenant."""
    name = f"orders-{uuid7().hex[-6:]}"
    registration = _server(name, *args, env=("SHOP_TOKEN",))
    await mcp.register_server(
        world.deps.store, registration, actor=Actor.operator(), correlation_id=uuid7()
    )
    await _openai_world(world)
    await enable_mcp_server(
        world.tenant_id, name, {"SHOP_TOKEN": SHOP_TOKEN}, deps=_assistant(world),
        actor=Actor.operator("test"), correlation_id=uuid7(),
    )  # fmt: skip
    return name


def _offered(api: FakeAPI, server: str) -> list[str]:
    """The server's tools offered to the model in the first call, in order."""
    names = [t["function"]["name"] for t in api.body(0).get("tools", [])]
    return [n for n in names if n.startswith(f"{server}__")]


class TestMcpServer:
    async def test_a_real_subprocess_answers_with_the_tenants_credential(
        self, world: World, make_harness: Any
    ) -> None:
        name = await _enabled(world)
        tool = f"{name}__lookup_order"
        api = FakeAPI(_calls(tool, {"order_id": "A-17"}), _text_round("It has shipped."))
        _use_http(world, api)
        _, reply = await _one_reply(world, "Where is order A-17?")
        assert _offered(api, name) == [tool]
        (called,) = await _tool_events(world, reply)
        assert called.tool == tool
        assert called.error is None
        answered = json.loads(called.result)
        assert answered["order"] == "A-17"
        assert answered["token"] == SHOP_TOKEN
        # A clean environment: PATH and the declared variable (Python may add its locale).
        assert set(answered["env"]) <= {"PATH", "SHOP_TOKEN", "LC_CTYPE"}
        assert world.orchestrator.tools.mcp.running == 0  # stopped with the reply

        # Another tenant did not enable it: its replies are not offered the server's tools.
        other = await a_world(await make_harness())
        try:
            await _openai_world(other)
            other_api = FakeAPI(_text_round("Hello."))
            _use_http(other, other_api)
            await _one_reply(other, "Where is order A-17?")
            offered = [t["function"]["name"] for t in other_api.body(0).get("tools", [])]
            assert tool not in offered
        finally:
            await other.orchestrator.close()

    async def test_every_page_of_its_tools_is_offered(self, world: World) -> None:
        name = await _enabled(world, "--extra-tools", "4", "--page-size", "2")
        tool = f"{name}__lookup_order"  # on the third and last page
        api = FakeAPI(_calls(tool, {"order_id": "A-17"}), _text_round("It has shipped."))
        _use_http(world, api)
        _, reply = await _one_reply(world, "Where is order A-17?")
        assert _offered(api, name) == [f"{name}__extra_{i}" for i in range(1, 5)] + [tool]
        (called,) = await _tool_events(world, reply)
        assert (called.tool, called.error) == (tool, None)
        assert json.loads(called.result)["order"] == "A-17"

    async def test_a_server_paging_for_ever_offers_no_tools_and_the_reply_goes_on(
        self, world: World
    ) -> None:
        name = await _enabled(world, "--endless")
        api = FakeAPI(_text_round("Hello."))
        _use_http(world, api)
        with capture_logs() as logs:
            _, reply = await _one_reply(world, "Where is order A-17?")
        assert reply.text == "Hello."
        assert _offered(api, name) == []
        (warned,) = [e for e in logs if e["event"] == "mcp_tools_unavailable"]
        assert warned["error"] == f"{name} lists its tools in more than {MAX_TOOL_PAGES} pages"
        assert world.orchestrator.tools.mcp.running == 0


@contextlib.asynccontextmanager
async def _session(*args: str, timeout: float = 10.0) -> AsyncIterator[McpSession]:
    processes = McpProcesses(timeout=timeout)
    try:
        yield await processes.start(LoadedMcpServer(server=_server("pager", *args), env={}))
    finally:
        await processes.close()


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("--endless", f"pager lists its tools in more than {MAX_TOOL_PAGES} pages"),
        ("--repeat-cursor", "pager gave the same tools/list cursor twice"),
    ],
)
async def test_a_cursor_that_never_ends_is_a_clear_error(mode: str, error: str) -> None:
    async with _session(mode) as session:
        with pytest.raises(McpError) as raised:
            await session.list_tools()
    assert str(raised.value) == error


async def test_every_page_is_listed_within_one_timeout() -> None:
    # Four pages of 0.4 s: each within the 1 s timeout, all of them not.
    paging = ("--extra-tools", "3", "--page-size", "1", "--page-delay", "0.4")
    async with _session(*paging, timeout=1.0) as session:
        with pytest.raises(McpError, match="pager did not list its tools in time"):
            await session.list_tools()
        assert session._process.returncode is not None  # killed


async def test_shutdown_reaps_running_servers(world: World) -> None:
    registration = _server("reaped")
    processes = world.orchestrator.tools.mcp
    session = await processes.start(LoadedMcpServer(server=registration, env={}))
    assert processes.running == 1
    process = session._process
    await world.orchestrator.close()
    assert process.returncode is not None
    assert processes.running == 0
