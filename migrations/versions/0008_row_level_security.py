"""Row-level security on every tenant table, and the API's role `metachat_app`.

- The role has no BYPASSRLS and owns nothing; it gets USAGE on the schemas the API reads, SELECT
  on their tables, and writes only where the API writes (events and their outbox rows, the key
  and user indexes, refresh tokens, idempotency keys). Read models stay the projector's.
- Every table with a `tenant_id` (partitions and projection generations included) gets
  row-level security and the `tenant_isolation` policy (`database.tenancy`).
- Views read with their caller's rights (`security_invoker`), so the policies of the tables
  beneath them apply to the API too (a view normally reads with its owner's).
- `tenants.api_key_by_prefix` is the one lookup made before the tenant is known: it runs with
  its owner's rights (SECURITY DEFINER) and answers one key's row for a presented prefix.

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

CREATE FUNCTION tenants.api_key_by_prefix(presented text)
RETURNS TABLE (tenant_id uuid, key_id uuid, key_hash bytea, scopes text[],
               expires_at timestamptz, revoked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.tenant_id, k.key_id, k.key_hash, k.scopes, k.expires_at, k.revoked_at
    FROM tenants.api_keys AS k WHERE k.prefix = presented
$$;
REVOKE ALL ON FUNCTION tenants.api_key_by_prefix(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants.api_key_by_prefix(text) TO {APP_ROLE};
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
    op.execute("DROP FUNCTION tenants.api_key_by_prefix(text)")
    # The role is the server's, not this database's: other databases may use it. What this
    # database granted it goes with the objects or is revoked here.
    for schema in [*_BASE_SCHEMAS, *conn.scalars(_GENERATIONS).all()]:
        op.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {APP_ROLE}')
        op.execute(f'REVOKE USAGE ON SCHEMA "{schema}" FROM {APP_ROLE}')
    op.execute(f"REVOKE USAGE ON SEQUENCE eventstore.events_position_seq FROM {APP_ROLE}")
