"""Providers' API keys of each tenant's assistant, sealed at rest (AES-256-GCM).

`tenants.provider_keys` is a write-side table of the tenants module, changed in the same
transaction as `tenants.provider_key_set` / `tenants.provider_key_removed`; no event carries a
key. Under row-level security like every tenant table; the API may write it.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from metachat.database.tenancy import APP_ROLE, protect_tenant_tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = f"""
CREATE TABLE tenants.provider_keys (
    tenant_id uuid NOT NULL REFERENCES tenants.tenant_ids (tenant_id),
    provider text NOT NULL,
    sealed bytea NOT NULL,
    key_version integer NOT NULL,
    last_four text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants.provider_keys TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    protect_tenant_tables(op.get_bind(), "tenants")


def downgrade() -> None:
    op.execute("DROP TABLE tenants.provider_keys")
