"""Tenant users and their refresh tokens: write-side tables of the tenants module.

`tenants.users` holds what must never be in an event (the argon2 password hash) next to the
lookup columns login needs; it is changed in the same transaction as the user's events, like
`tenants.api_keys`. `tenants.refresh_tokens` keeps only a SHA-256 of each refresh token with its
family, so a reused token can revoke every token of its family.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE tenants.users (
    tenant_id uuid NOT NULL REFERENCES tenants.tenant_ids (tenant_id),
    user_id uuid NOT NULL,
    email text NOT NULL,
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'agent')),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
-- Emails are unique per tenant regardless of case; login looks users up through this index.
CREATE UNIQUE INDEX users_tenant_email_key ON tenants.users (tenant_id, lower(email));

CREATE TABLE tenants.refresh_tokens (
    token_hash bytea PRIMARY KEY,
    tenant_id uuid NOT NULL,
    user_id uuid NOT NULL,
    family_id uuid NOT NULL,
    issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz,
    FOREIGN KEY (tenant_id, user_id) REFERENCES tenants.users (tenant_id, user_id)
);
CREATE INDEX refresh_tokens_family_idx ON tenants.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON tenants.refresh_tokens (tenant_id, user_id);
"""

DOWNGRADE = """
DROP TABLE tenants.refresh_tokens;
DROP TABLE tenants.users;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
