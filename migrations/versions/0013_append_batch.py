"""`eventstore.append_batch`: several independent appends in one statement (group commit).

The API appends a command decided from its stream cache with one call of
`eventstore.append_events` (migration 0012), each in autocommit: a transaction, a commit and a
WAL flush per request. Under load, the appends that arrive while one is on its way to the
database are gathered (`eventstore.appends`) and sent as one call of this function, which runs
`append_events` for each entry in order, inside one statement: one round trip, one
transaction, one commit for all of them.

Each entry is independent, as if it were alone: the tenant setting is reset to the entry's own
`scope` (none when it has none, not the one the entry before it set) and the entry runs with
the caller's rights, so the row-level security policies bind each entry's rows to its tenant;
and an entry whose stream had moved on writes nothing and answers the events after its
expected version, while the others are appended. The rows answered carry the entry's number
(from 1) before `append_events`'s columns. An error in any entry (a unique violation from a
concurrent writer, a refused row) fails the whole statement, hence writes nothing at all; the
caller then runs each entry on its own, so that the error reaches only its own writer.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

from metachat.database.tenancy import APP_ROLE

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_SIGNATURE = "eventstore.append_batch(json)"

UPGRADE = f"""
CREATE FUNCTION eventstore.append_batch(p_batch json)
RETURNS TABLE (entry integer, appended boolean, "position" bigint, event_id uuid,
               tenant_id uuid, stream_id text, stream_version integer, type text,
               schema_version integer, occurred_at timestamptz, correlation_id uuid,
               causation_id uuid, actor jsonb, payload jsonb)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    item json;
    n integer := 0;
BEGIN
    FOR item IN SELECT value FROM json_array_elements(p_batch) LOOP
        n := n + 1;
        -- As if alone: no tenant but the entry's own (not the one before it set).
        PERFORM set_config('app.tenant_id', coalesce(item->>'scope', ''), true);
        RETURN QUERY
        SELECT n, a.*
        FROM eventstore.append_events(
            (item->>'scope')::uuid, (item->>'tenant_id')::uuid, item->>'stream_id',
            (item->>'expected_version')::integer, (item->>'occurred_at')::timestamptz,
            (item->>'correlation_id')::uuid, (item->>'causation_id')::uuid,
            (item->'actor')::jsonb, item->'events') AS a;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION {_SIGNATURE} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {_SIGNATURE} TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
