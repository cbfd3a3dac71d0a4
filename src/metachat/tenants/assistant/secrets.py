"""Tools' secrets at rest: `tenants.tool_secrets`, sealed with the tenant's `SecretBox`.

A row is (tenant, kind, tool or server, variable); its associated data names all three, so a
sealed value copied to another tool, server or variable does not open.
"""

import uuid
from collections.abc import Mapping
from datetime import datetime

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.tenants.assistant.crypto import KEY_VERSION, SecretBox
from metachat.tenants.commands import HttpTool, RegisterMcpServer

_UPSERT = text("""
INSERT INTO tenants.tool_secrets (tenant_id, kind, name, variable, sealed, key_version, updated_at)
VALUES (:t, :k, :n, :var, :s, :ver, :at)
ON CONFLICT (tenant_id, kind, name, variable)
DO UPDATE SET sealed = excluded.sealed, key_version = excluded.key_version,
              updated_at = excluded.updated_at
""")
_DELETE = text("DELETE FROM tenants.tool_secrets WHERE tenant_id = :t AND kind = :k AND name = :n")
_ALL = text("SELECT kind, name, variable, sealed FROM tenants.tool_secrets WHERE tenant_id = :t")
HTTP_SECRET = "auth"  # noqa: S105 - a name, not a secret
"""The variable of an HTTP tool's one secret (its bearer token or header value)."""


class LoadedHttpTool(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP tool with its opened secret, for one reply."""

    tool: HttpTool
    secret: str | None = None

    def __repr__(self) -> str:
        return f"LoadedHttpTool(name={self.tool.name!r}, secret=<{self.secret is not None}>)"


class LoadedMcpServer(msgspec.Struct, frozen=True, kw_only=True):
    """An enabled MCP server's registration with the tenant's opened credentials."""

    server: RegisterMcpServer
    env: dict[str, str]

    def __repr__(self) -> str:
        return f"LoadedMcpServer(name={self.server.name!r}, env=<{sorted(self.env)}>)"


def _aad(kind: str, name: str, variable: str) -> str:
    return f"tool:{kind}:{name}:{variable}"


async def replace_secrets(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    tenant_id: uuid.UUID,
    kind: str,
    name: str,
    values: Mapping[str, str],
    at: datetime,
) -> None:
    """Delete the tool's (or server's) secrets, then store `values` sealed."""
    await conn.execute(_DELETE, {"t": tenant_id, "k": kind, "n": name})
    for variable, value in values.items():
        sealed = box.seal(value, tenant_id=tenant_id, name=_aad(kind, name, variable))
        params = {"t": tenant_id, "k": kind, "n": name, "var": variable, "s": sealed}
        await conn.execute(_UPSERT, {**params, "ver": KEY_VERSION, "at": at})


async def open_secrets(
    conn: AsyncConnection, box: SecretBox, tenant_id: uuid.UUID
) -> dict[tuple[str, str], dict[str, str]]:
    """(kind, name) → variable → opened value, for every tool secret of the tenant."""
    opened: dict[tuple[str, str], dict[str, str]] = {}
    for row in (await conn.execute(_ALL, {"t": tenant_id})).all():
        aad = _aad(row.kind, row.name, row.variable)
        value = box.open(bytes(row.sealed), tenant_id=tenant_id, name=aad)
        opened.setdefault((row.kind, row.name), {})[row.variable] = value
    return opened
