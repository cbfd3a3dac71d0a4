"""The API key lookup also answers the key's expiry, so that an API process may remember it.

`tenants.authenticate_api_key` (0008) answered a key's tenant, id and scopes. The API now keeps
what it answered for a short while (`api.keycache`), and an entry must never outlive the key's
own `expires_at`, so the function answers that too. Same checks, same coarse last-used write.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from metachat.database.tenancy import APP_ROLE

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_SIGNATURE = "tenants.authenticate_api_key(text, bytea, timestamptz)"


def _function(columns: str, selected: str) -> str:
    return f"""
DROP FUNCTION IF EXISTS {_SIGNATURE};
CREATE FUNCTION tenants.authenticate_api_key(presented_prefix text, presented_hash bytea,
                                             at timestamptz)
RETURNS TABLE ({columns})
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH found AS (
        SELECT k.tenant_id, k.key_id, k.scopes, k.expires_at, k.last_used_at
        FROM tenants.api_keys AS k
        WHERE k.prefix = presented_prefix AND k.key_hash = presented_hash
          AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > at)
    ), touched AS (
        UPDATE tenants.api_keys AS k SET last_used_at = at FROM found AS f
        WHERE k.tenant_id = f.tenant_id AND k.key_id = f.key_id
          AND (f.last_used_at IS NULL OR f.last_used_at < at - interval '1 minute')
    )
    SELECT {selected} FROM found
$$;
REVOKE ALL ON FUNCTION {_SIGNATURE} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {_SIGNATURE} TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(
        _function(
            "tenant_id uuid, key_id uuid, scopes text[], expires_at timestamptz",
            "found.tenant_id, found.key_id, found.scopes, found.expires_at",
        )
    )


def downgrade() -> None:
    op.execute(
        _function(
            "tenant_id uuid, key_id uuid, scopes text[]",
            "found.tenant_id, found.key_id, found.scopes",
        )
    )
