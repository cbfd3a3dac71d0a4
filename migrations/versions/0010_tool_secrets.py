"""Secrets of tenants' tools, sealed at rest (AES-256-GCM): HTTP tools' tokens, MCP credentials.

`tenants.tool_secrets` is a write-side table of the tenants module, changed in the same
transaction as `tenants.http_tool_configured` / `tenants.http_tool_removed` and
`tenants.mcp_server_enabled` / `tenants.mcp_server_disabled`; no event carries a secret. One row
per (tenant, kind, tool or server, variable): an HTTP tool has one (`auth`), an MCP server one
per environment variable its registration declares. Under row-level security like every tenant
table; the API may write it.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from metachat.database.tenancy import APP_ROLE, protect_tenant_tables

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = f"""
CREATE TABLE tenants.tool_secrets (
    tenant_id uuid NOT NULL REFERENCES tenants.tenant_ids (tenant_id),
    kind text NOT NULL CHECK (kind IN ('http', 'mcp')),
    name text NOT NULL,
    variable text NOT NULL,
    sealed bytea NOT NULL,
    key_version integer NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, kind, name, variable)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants.tool_secrets TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    protect_tenant_tables(op.get_bind(), "tenants")


def downgrade() -> None:
    op.execute("DROP TABLE tenants.tool_secrets")
