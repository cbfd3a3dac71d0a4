"""Tools the model may call while it answers, and how their calls are run.

Built in: `search_knowledge_base` (the knowledge module's retrieval), `hand_off_to_human` (the
model decides the customer needs a person) and `conversation_facts` (what the platform knows of
this conversation). Beside them, the tenant's own (`ExternalTool`: its HTTP tools and its MCP
servers' tools, see `tenant_tools`). Every call and its result is recorded (`ToolCalled`). A
failing tool answers the model with the error instead of failing the reply; a call to an unknown
tool is an error result too, so a model that invents a tool cannot break the pipeline.
"""

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from metachat.llm.ports import ContextSnippet, ToolCall, ToolSpec

Retrieve = Callable[[str, int], Awaitable[Sequence[ContextSnippet]]]
"""The knowledge module's retrieval: (query, top k) → snippets."""
MAX_RESULT = 4_000
"""Characters of a tool's result given back to the model (and recorded)."""


class ToolResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one tool call answered."""

    call: ToolCall
    content: str
    error: str | None = None
    duration_ms: int = 0


ToolFunction = Callable[[dict[str, Any]], Awaitable[str]]


class ExternalTool(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's tool: what the model sees, and how a call is made."""

    spec: ToolSpec
    call: ToolFunction


class Toolbox(msgspec.Struct, kw_only=True):
    """The tools of one reply: their specs for the model, and their effects.

    `hand_off_requested` is set when the model called `hand_off_to_human`; the pipeline then
    hands the conversation off whatever the answer's confidence.
    """

    facts: dict[str, Any]
    retrieve: Retrieve
    external: Sequence[ExternalTool] = ()
    hand_off_requested: str | None = None

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """The built-in tools and the tenant's, as the model sees them."""
        return BUILT_IN + tuple(tool.spec for tool in self.external)

    async def run(self, call: ToolCall) -> ToolResult:
        """Run one call; never raises."""
        started = time.perf_counter()
        try:
            content = await self._dispatch(call)
            error = None
        except Exception as exc:  # a tool's failure is the model's information, not ours
            content, error = f"error: {exc}", str(exc) or type(exc).__name__
        elapsed = int((time.perf_counter() - started) * 1000)
        return ToolResult(call=call, content=content[:MAX_RESULT], error=error, duration_ms=elapsed)

    async def _dispatch(self, call: ToolCall) -> str:
        if call.error is not None:
            raise ValueError(f"the arguments could not be read: {call.error}")
        if call.name == "search_knowledge_base":
            query = str(call.arguments.get("query", "")).strip()
            if not query:
                raise ValueError("query is required")
            top_k = min(max(int(call.arguments.get("top_k", 5)), 1), 10)
            found = await self.retrieve(query, top_k)
            if not found:
                return "No matching passage in the knowledge base."
            return "\n".join(f"[{s.number}] {s.text} (source: {s.source})" for s in found)
        if call.name == "hand_off_to_human":
            self.hand_off_requested = str(call.arguments.get("reason", "")).strip() or "model"
            return "The conversation will be handed to a human colleague."
        if call.name == "conversation_facts":
            return msgspec.json.encode(self.facts).decode()
        for tool in self.external:
            if tool.spec.name == call.name:
                return await tool.call(dict(call.arguments))
        raise ValueError(f"unknown tool {call.name!r}")


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str]) -> ToolSpec:
    schema = {"type": "object", "properties": properties, "required": required}
    return ToolSpec(name=name, description=description, parameters=schema)


BUILT_IN: tuple[ToolSpec, ...] = (
    _spec(
        "search_knowledge_base",
        "Search the business's documents for passages that answer a question.",
        {
            "query": {"type": "string", "description": "What to look for."},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        ["query"],
    ),
    _spec(
        "hand_off_to_human",
        "Pass the conversation to a human colleague when you cannot or should not answer.",
        {"reason": {"type": "string", "description": "Why a person should take over."}},
        ["reason"],
    ),
    _spec(
        "conversation_facts",
        "Facts about this conversation: its channel, the customer's id, when it started.",
        {},
        [],
    ),
)
