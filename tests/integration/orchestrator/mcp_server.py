"""A tiny MCP server over stdio for the tests: one tool, `lookup_order`.

Plain Python, no SDK: JSON-RPC 2.0, one message per line. Its answer echoes the credential it
reads from its environment (`SHOP_TOKEN`) and the names of every variable it was given, so a
test can check both that the tenant's credential arrived and that nothing else did.
"""

import json
import os
import sys
from typing import Any


def answer(message: dict[str, Any]) -> dict[str, Any] | None:
    method = message.get("method")
    result: dict[str, Any]
    if "id" not in message:
        return None  # a notification (notifications/initialized)
    if method == "initialize":
        result = {
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "test-orders", "version": "1"},
        }
    elif method == "tools/list":
        schema = {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        }
        result = {
            "tools": [
                {"name": "lookup_order", "description": "An order's status.", "inputSchema": schema}
            ]
        }
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
        return {
            "jsonrpc": "2.0",
            "id": message["id"],
            "error": {"code": -32601, "message": "no such method"},
        }
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


for line in sys.stdin:
    reply = answer(json.loads(line))
    if reply is not None:
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
