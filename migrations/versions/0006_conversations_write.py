"""Conversations write side: the stored answers behind `Idempotency-Key`.

A row is claimed (status NULL) by the first request carrying a key, in its own committed
transaction, and completed with the answer once the request has run; a repeat replays it.
Rows older than 24 hours are pruned by the writers themselves.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE SCHEMA IF NOT EXISTS api;

CREATE TABLE api.idempotency_keys (
    tenant_id uuid NOT NULL REFERENCES tenants.tenant_ids (tenant_id),
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    method text NOT NULL,
    path text NOT NULL,
    request_hash bytea NOT NULL,
    -- NULL while the first request is still running; its answer afterwards.
    status integer,
    headers jsonb,
    body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (tenant_id, key)
);
-- Pruning deletes a tenant's expired keys: led by tenant_id like every tenant index.
CREATE INDEX idempotency_keys_tenant_created_idx ON api.idempotency_keys (tenant_id, created_at);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE api.idempotency_keys; DROP SCHEMA api;")
