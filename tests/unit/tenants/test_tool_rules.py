"""HTTP tools and MCP enabling: what the assistant aggregate accepts and refuses."""

from typing import Any

import msgspec
import pytest

from metachat.kernel.errors import ValidationError
from metachat.tenants.assistant import model
from metachat.tenants.commands import (
    MAX_HTTP_TOOLS,
    ConfigureHttpTool,
    DisableMcpServer,
    EnableMcpServer,
    HttpTool,
    RemoveHttpTool,
)
from metachat.tenants.events import HttpToolConfigured, HttpToolRemoved, McpServerEnabled

SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "verbose": {"type": "boolean"}},
    "required": ["order_id"],
}


def _tool(**changes: Any) -> HttpTool:
    fields = {
        "name": "order_status",
        "description": "Look up an order.",
        "url": "https://shop.example.com/orders/{order_id}",
        "parameters": SCHEMA,
        **changes,
    }
    return msgspec.convert(fields, HttpTool)


def _configure(tool: HttpTool, *, secret: bool = False, state: Any = None) -> list[Any]:
    return model.decide(
        state or model.AssistantState(), ConfigureHttpTool(tool=tool, has_secret=secret)
    )


class TestConfigureHttpTool:
    def test_a_valid_tool_is_recorded_without_its_secret(self) -> None:
        (event,) = _configure(_tool(auth="bearer"), secret=True)
        assert isinstance(event, HttpToolConfigured)
        assert event.has_secret
        assert set(msgspec.structs.asdict(event)) == {"tool", "has_secret"}

    @pytest.mark.parametrize(
        ("changes", "secret"),
        [
            ({"name": "search_knowledge_base"}, False),
            ({"name": "a__b"}, False),
            ({"parameters": {"type": "array"}}, False),
            ({"parameters": {"type": "object", "properties": {}, "required": ["x"]}}, False),
            ({"url": "https://{order_id}.example.com/"}, False),
            ({"url": "https://shop.example.com/{verbose}"}, False),
            ({"url": "https://shop.example.com/{nope"}, False),
            ({"auth": "bearer"}, False),
            ({"auth": "none"}, True),
            ({"auth": "header"}, True),
            ({"auth": "header", "header_name": "Host"}, True),
            ({"header_name": "X-Key"}, False),
        ],
    )
    def test_refused(self, changes: dict[str, Any], secret: bool) -> None:
        with pytest.raises(ValidationError):
            _configure(_tool(**changes), secret=secret)

    @pytest.mark.parametrize(
        "fields",
        [
            {"name": "1tool"},
            {"name": "has space"},
            {"url": "ftp://example.com/"},
            {"method": "DELETE"},
            {"timeout_seconds": 16},
        ],
    )
    def test_the_shape_is_refused_when_decoded(self, fields: dict[str, Any]) -> None:
        with pytest.raises(msgspec.ValidationError):
            _tool(**fields)

    def test_header_auth_with_its_header(self) -> None:
        assert _configure(_tool(auth="header", header_name="X-Api-Key"), secret=True)

    def test_at_most_a_bound_of_tools(self) -> None:
        state = model.AssistantState()
        for number in range(MAX_HTTP_TOOLS):
            (event,) = _configure(_tool(name=f"t{number}"), state=state)
            state = model.evolve(state, event)
        with pytest.raises(ValidationError):
            _configure(_tool(name="one_more"), state=state)
        assert _configure(_tool(name="t0"), state=state)  # replacing one is fine

    def test_removed_once(self) -> None:
        state = model.evolve(model.AssistantState(), _configure(_tool())[0])
        (removed,) = model.decide(state, RemoveHttpTool(name="order_status"))
        assert isinstance(removed, HttpToolRemoved)
        assert model.decide(model.evolve(state, removed), RemoveHttpTool(name="order_status")) == []


class TestEnableMcpServer:
    def test_exactly_the_declared_credentials(self) -> None:
        command = EnableMcpServer(server="orders", variables=("TOKEN",), declared=("TOKEN",))
        (event,) = model.decide(model.AssistantState(), command)
        assert isinstance(event, McpServerEnabled)
        assert event.variables == ["TOKEN"]
        state = model.evolve(model.AssistantState(), event)
        assert state.mcp_servers == {"orders": ["TOKEN"]}
        assert model.decide(state, DisableMcpServer(server="orders"))

    @pytest.mark.parametrize("given", [(), ("TOKEN", "OTHER"), ("OTHER",)])
    def test_other_credentials_are_refused(self, given: tuple[str, ...]) -> None:
        command = EnableMcpServer(server="orders", variables=given, declared=("TOKEN",))
        with pytest.raises(ValidationError):
            model.decide(model.AssistantState(), command)
