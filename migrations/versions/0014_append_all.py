"""`eventstore.append_all`: appends to several streams, all or nothing, in one statement.

`PostgresEventStore.append_together` (a reply with its usage events) used to pipeline BEGIN,
the tenant, one append per stream, then wait for the results before sending COMMIT or
ROLLBACK: two round trips and five statements or more. This function runs
`eventstore.append_events` for each entry in order, as `append_batch` (migration 0013) does,
but raises as soon as one entry wrote fewer events than it carried (its stream had moved on),
so the statement, in autocommit its whole transaction, writes nothing at all: one round trip.
The refusal is SQLSTATE `MC409`; the rows answered are each entry's number and the positions
it took.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from metachat.database.tenancy import APP_ROLE

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_SIGNATURE = "eventstore.append_all(json)"
MOVED_SQLSTATE = "MC409"
"""Raised by `append_all` when one entry's stream had moved past its expected version."""

UPGRADE = f"""
CREATE FUNCTION eventstore.append_all(p_batch json)
RETURNS TABLE (entry integer, "position" bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    item json;
    n integer := 0;
    written integer;
BEGIN
    FOR item IN SELECT value FROM json_array_elements(p_batch) LOOP
        n := n + 1;
        PERFORM set_config('app.tenant_id', coalesce(item->>'scope', ''), true);
        RETURN QUERY
        SELECT n, a.position
        FROM eventstore.append_events(
            (item->>'scope')::uuid, (item->>'tenant_id')::uuid, item->>'stream_id',
            (item->>'expected_version')::integer, (item->>'occurred_at')::timestamptz,
            (item->>'correlation_id')::uuid, (item->>'causation_id')::uuid,
            (item->'actor')::jsonb, item->'events') AS a
        WHERE a.appended;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written <> json_array_length(item->'events') THEN
            RAISE EXCEPTION 'stream % has moved past version %',
                item->>'stream_id', item->>'expected_version'
                USING ERRCODE = '{MOVED_SQLSTATE}';
        END IF;
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
