"""A tiny MCP server over stdio for the tests: the tool `lookup_order`, and more on demand.

Plain Python, no SDK: JSON-RPC 2.0, one message per line. Its answer echoes the credential it
reads from its environment (`SHOP_TOKEN`) and the names of every variable it was given, so a
test can check both that the tenant's credential arrived and that nothing else did.

Arguments (its registration's `args`) make it page `tools/list`, well or badly:
`--extra-tools N` lists `extra_1`…`extra_N` before `lookup_order`; `--page-size K` gives them
K a page, with a `nextCursor` until the last (an unknown cursor is refused, as the spec says);
`--page-delay S` waits S seconds before each page; `--endless` answers every page with one new
tool and a new cursor, for ever; `--repeat-cursor` answers every page with the same cursor.
"""

import argparse
import json
import os
import sys
import time
from typing import Any

_INVALID_PARAMS = -32602
_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
}

parser = argparse.ArgumentParser()
parser.add_argument("--extra-tools", type=int, default=0)
parser.add_argument("--page-size", type=int, default=0)
parser.add_argument("--page-delay", type=float, default=0.0)
parser.add_argument("--endless", action="store_true")
parser.add_argument("--repeat-cursor", action="store_true")
options = parser.parse_args()

TOOLS = [
    {"name": f"extra_{i}", "description": f"Extra tool {i}.", "inputSchema": _SCHEMA}
    for i in range(1, options.extra_tools + 1)
] + [{"name": "lookup_order", "description": "An order's status.", "inputSchema": _SCHEMA}]


def _error(message: dict[str, Any], code: int, text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": message["id"], "error": {"code": code, "message": text}}


def tools_page(cursor: str | None) -> dict[str, Any] | None:
    """One page of `tools/list` for the cursor given (None: the first); None if unknown."""
    time.sleep(options.page_delay)
    if options.endless:
        page = int(cursor) if cursor and cursor.isdigit() else 0
        return {"tools": [{**TOOLS[0], "name": f"endless_{page}"}], "nextCursor": str(page + 1)}
    if options.repeat_cursor:
        return {"tools": TOOLS[:1], "nextCursor": "again"}
    size = options.page_size or len(TOOLS)
    if cursor is None:
        start = 0
    elif cursor.isdigit() and 0 < int(cursor) < len(TOOLS):
        start = int(cursor)
    else:
        return None
    result: dict[str, Any] = {"tools": TOOLS[start : start + size]}
    if start + size < len(TOOLS):
        result["nextCursor"] = str(start + size)
    return result


def answer(message: dict[str, Any]) -> dict[str, Any] | None:
    method = message.get("method")
    result: dict[str, Any] | None
    if "id" not in message:
        return None  # a notification (notifications/initialized)
    if method == "initialize":
        result = {
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "test-orders", "version": "1"},
        }
    elif method == "tools/list":
        result = tools_page(message.get("params", {}).get("cursor"))
        if result is None:
            return _error(message, _INVALID_PARAMS, "invalid cursor")
    elif method == "tools/call":
        order = message["params"]["arguments"].get("order_id")
        text = json.dumps(
            {
                "order": order,
                "status": "shipped",
                "token": os.environ.get("SHOP_TOKEN"),
                "env": sorted(os.environ),
            }
        )
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    else:
        return _error(message, -32601, "no such method")
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


for line in sys.stdin:
    reply = answer(json.loads(line))
    if reply is not None:
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
