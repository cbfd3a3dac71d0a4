"""Row-level security: the API's database role, the tenant per transaction, the policies.

Every table holding tenant data has row-level security enabled and one policy,
`tenant_isolation`: a row is visible and writable only when its `tenant_id` equals the
transaction's `app.tenant_id` setting. With no tenant set, a query sees nothing and an insert is
refused.

- The API connects as (`SET ROLE`s to) `metachat_app`: no BYPASSRLS, not the owner of any table,
  and granted only what the API does (reads, and the write-side tables it changes). Policies
  bind it; the table owner (the role that migrates, and the workers that project and relay for
  every tenant) is not bound by them, since RLS is enabled but not forced.
- `scope_transactions` makes every transaction on an engine begin with
  `set_config('app.tenant_id', <tenant>, true)`, the tenant being the context's
  (`kernel.tenancy`): transaction-local, so it ends with the commit or rollback and a pooled
  connection never carries one request's tenant into the next.
- Tables that appear at run time get the same treatment where they are created: a projection's
  new generation (`expose_schema`), a new month of the messages partitions
  (`protect_tenant_tables`).

See architecture/decisions/0008-row-level-security.md.
"""

from typing import Any

from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.kernel.tenancy import current_tenant

APP_ROLE = "metachat_app"
"""The role the API's connections act as (row-level security applies to it)."""
TENANT_SETTING = "app.tenant_id"
POLICY = "tenant_isolation"
TENANT_EXPRESSION = f"nullif(current_setting('{TENANT_SETTING}', true), '')::uuid"
"""The transaction's tenant; NULL when none is set (`''` once a local setting has ended)."""

SET_TENANT = f"SELECT set_config('{TENANT_SETTING}', %s, true)"

# Created once per cluster (roles are cluster-wide). A concurrent creator (two databases of one
# server migrating at once) loses on the catalogue's unique index: that is success too. The
# migrating role becomes a member so that it can `SET ROLE` to it; a superuser already can.
_ENSURE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        BEGIN
            CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
        EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
    END IF;
END
$$
"""

_UNPROTECTED = text(f"""
SELECT c.relname
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT FROM pg_policy AS p WHERE p.polrelid = c.oid AND p.polname = '{POLICY}')
ORDER BY c.relname
""")


def ensure_app_role(conn: Connection) -> None:
    """Create the API's role if this server has none yet (idempotent)."""
    conn.execute(text(_ENSURE_ROLE))


def protect_tenant_tables(conn: Connection, schema: str) -> list[str]:
    """Enable row-level security with the tenant policy on every tenant table of `schema`.

    A tenant table is one with a `tenant_id` column, partitions included (a partition read
    directly is not covered by its parent's policy). Tables already protected are left alone.
    Returns the names of the tables it protected.
    """
    names = list(conn.scalars(_UNPROTECTED, {"schema": schema}))
    for name in names:
        table = f'"{schema}"."{name}"'
        conn.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
        conn.execute(
            text(
                f"CREATE POLICY {POLICY} ON {table} "
                f"USING (tenant_id = {TENANT_EXPRESSION}) "
                f"WITH CHECK (tenant_id = {TENANT_EXPRESSION})"
            )
        )
    return names


def expose_schema(conn: Connection, schema: str) -> None:
    """Let the API read a schema's tables, under row-level security (a read model's tables)."""
    ensure_app_role(conn)
    conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {APP_ROLE}'))
    conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {APP_ROLE}'))
    protect_tenant_tables(conn, schema)


def scope_transactions(engine: AsyncEngine) -> None:
    """Begin every transaction of `engine` by setting the context's tenant, if there is one.

    Without a tenant nothing is set, so the transaction sees no tenant rows. An autocommit
    connection has no transaction to scope: it acts for no tenant.
    """

    def begin(conn: Connection) -> None:
        tenant = current_tenant()
        if tenant is None or conn._is_autocommit_isolation():  # noqa: SLF001 - no public probe
            return
        # The DBAPI cursor, not `conn.execute`: SQLAlchemy is inside its own begin here. psycopg
        # opens the transaction with this statement, which then belongs to it.
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(SET_TENANT, (str(tenant),))
        finally:
            cursor.close()

    event.listen(engine.sync_engine, "begin", begin)


def role_option(role: str) -> str:
    """The libpq `options` switch that makes a connection act as `role` from its start."""
    return f"-c role={role}"
