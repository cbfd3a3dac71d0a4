"""Row-level security on every tenant table, and the API's role `metachat_app`.

- The role has no BYPASSRLS and owns nothing; it gets USAGE on the schemas the API reads, SELECT
  on their tables, and writes only where the API writes (events and their outbox rows, the key
  and user indexes, refresh tokens, idempotency keys). Read models stay the projector's.
- Every table with a `tenant_id` (partitions and projection generations included) gets
  row-level security and the `tenant_isolation` policy (`database.tenancy`).
- Views read with their caller's rights (`security_invoker`), so the policies of the tables
  beneath them apply to the API too (a view normally reads with its owner's).
- `tenants.authenticate_api_key` is the one lookup made before the tenant is known: it runs with
  its owner's rights (SECURITY DEFINER) and answers the presented key's tenant and scopes.

Revision ID: 0008
Revises: 0007
"""

from alembic import op
from sqlalchemy import text

from metachat.database.tenancy import (
    APP_ROLE,
    POLICY,
    ensure_app_role,
    expose_schema,
    protect_tenant_tables,
)

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BASE_SCHEMAS = ("tenants", "eventstore", "conversations", "api", "analytics")

GRANTS = f"""
GRANT USAGE ON SCHEMA {", ".join(_BASE_SCHEMAS)} TO {APP_ROLE};
GRANT SELECT ON ALL TABLES IN SCHEMA tenants, conversations, api, analytics TO {APP_ROLE};
GRANT SELECT, INSERT ON eventstore.events, eventstore.outbox TO {APP_ROLE};
GRANT USAGE ON SEQUENCE eventstore.events_position_seq TO {APP_ROLE};
GRANT INSERT, UPDATE ON tenants.api_keys, tenants.users, tenants.refresh_tokens TO {APP_ROLE};
GRANT INSERT, UPDATE, DELETE ON api.idempotency_keys TO {APP_ROLE};

-- The one lookup made before the tenant is known, and the hottest statement of the API: a key
-- is found by its prefix and keyed hash, refused when revoked or expired, and its coarse
-- last-used time (one write per key per minute) is kept, all in one call. Comparing the hash in
-- SQL leaks nothing through timing: it is an HMAC under the server's pepper, which no caller
-- can aim at.
CREATE FUNCTION tenants.authenticate_api_key(presented_prefix text, presented_hash bytea,
                                             at timestamptz)
RETURNS TABLE (tenant_id uuid, key_id uuid, scopes text[])
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH found AS (
        SELECT k.tenant_id, k.key_id, k.scopes, k.last_used_at FROM tenants.api_keys AS k
        WHERE k.prefix = presented_prefix AND k.key_hash = presented_hash
          AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > at)
    ), touched AS (
        UPDATE tenants.api_keys AS k SET last_used_at = at FROM found AS f
        WHERE k.tenant_id = f.tenant_id AND k.key_id = f.key_id
          AND (f.last_used_at IS NULL OR f.last_used_at < at - interval '1 minute')
    )
    SELECT found.tenant_id, found.key_id, found.scopes FROM found
$$;
REVOKE ALL ON FUNCTION tenants.authenticate_api_key(text, bytea, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants.authenticate_api_key(text, bytea, timestamptz) TO {APP_ROLE};
"""

_VIEWS = text("""
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'v' AND n.nspname = ANY(:schemas)
""")
_GENERATIONS = text(
    "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, 'proj_') ORDER BY nspname"
)
_POLICIES = text(f"""
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_policy AS p JOIN pg_class AS c ON c.oid = p.polrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE p.polname = '{POLICY}'
""")


def upgrade() -> None:
    conn = op.get_bind()
    ensure_app_role(conn)
    op.execute(GRANTS)
    for schema in _BASE_SCHEMAS:
        protect_tenant_tables(conn, schema)
    for schema in conn.scalars(_GENERATIONS).all():
        expose_schema(conn, schema)
    for view in conn.scalars(_VIEWS, {"schemas": list(_BASE_SCHEMAS)}).all():
        op.execute(f"ALTER VIEW {view} SET (security_invoker = true)")


def downgrade() -> None:
    conn = op.get_bind()
    for view in conn.scalars(_VIEWS, {"schemas": list(_BASE_SCHEMAS)}).all():
        op.execute(f"ALTER VIEW {view} RESET (security_invoker)")
    for table in conn.scalars(_POLICIES).all():
        op.execute(f"DROP POLICY {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION tenants.authenticate_api_key(text, bytea, timestamptz)")
    # The role is the server's, not this database's: other databases may use it. What this
    # database granted it goes with the objects or is revoked here.
    for schema in [*_BASE_SCHEMAS, *conn.scalars(_GENERATIONS).all()]:
        op.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {APP_ROLE}')
        op.execute(f'REVOKE USAGE ON SCHEMA "{schema}" FROM {APP_ROLE}')
    op.execute(f"REVOKE USAGE ON SEQUENCE eventstore.events_position_seq FROM {APP_ROLE}")
