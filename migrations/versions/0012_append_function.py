"""`eventstore.append_events`: an append as one statement, with its tenant and its refusal.

The API's hot path used to pipeline four statements per command (BEGIN, the tenant setting, the
append, COMMIT) and a fifth to learn what a refused append had missed; each one costs the Python
driver a send and a result. This function does all of it in one call, which in autocommit is its
own transaction:

1. the transaction's tenant (`app.tenant_id`, row-level security) when `scope` is given — it
   runs with its caller's rights (SECURITY INVOKER), so the policies bind the API's role inside
   it exactly as outside;
2. the append (the statement of `PostgresEventStore.append`: a transaction id before a position,
   the version check in the WHERE clause, the outbox rows in the same statement); the rows
   answered are `appended = true` with the new positions;
3. when it wrote nothing (the stream had moved on), the events after `expected`, answered with
   `appended = false`: what the writer missed.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from metachat.database.tenancy import APP_ROLE

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_SIGNATURE = (
    "eventstore.append_events(uuid, uuid, text, integer, timestamptz, uuid, uuid, jsonb, json)"
)

UPGRADE = f"""
CREATE FUNCTION eventstore.append_events(
    scope uuid, p_tenant uuid, p_stream text, p_expected integer, p_occurred timestamptz,
    p_correlation uuid, p_causation uuid, p_actor jsonb, p_events json)
RETURNS TABLE (appended boolean, "position" bigint, event_id uuid, tenant_id uuid,
               stream_id text, stream_version integer, type text, schema_version integer,
               occurred_at timestamptz, correlation_id uuid, causation_id uuid, actor jsonb,
               payload jsonb)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
#variable_conflict use_column
BEGIN
    IF scope IS NOT NULL THEN
        PERFORM set_config('app.tenant_id', scope::text, true);
    END IF;
    RETURN QUERY
    WITH ev AS (
        INSERT INTO eventstore.events (
            tx_id, position, event_id, tenant_id, stream_id, stream_version, type,
            schema_version, occurred_at, correlation_id, causation_id, actor, payload)
        SELECT pg_current_xact_id(), nextval('eventstore.events_position_seq'),
               e.event_id, p_tenant, p_stream, e.stream_version, e.type, e.schema_version,
               p_occurred, p_correlation, p_causation, p_actor, e.payload
        FROM json_to_recordset(p_events)
             AS e(event_id uuid, stream_version integer, type text, schema_version integer,
                  payload jsonb)
        WHERE (SELECT coalesce(max(x.stream_version), 0) FROM eventstore.events AS x
               WHERE x.stream_id = p_stream) = p_expected
        RETURNING position
    ), ob AS (
        INSERT INTO eventstore.outbox (position) SELECT ev.position FROM ev
        RETURNING outbox.position
    )
    SELECT true, ob.position, NULL::uuid, NULL::uuid, NULL::text, NULL::integer, NULL::text,
           NULL::integer, NULL::timestamptz, NULL::uuid, NULL::uuid, NULL::jsonb, NULL::jsonb
    FROM ob;
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT false, e.position, e.event_id, e.tenant_id, e.stream_id, e.stream_version,
               e.type, e.schema_version, e.occurred_at, e.correlation_id, e.causation_id,
               e.actor, e.payload
        FROM eventstore.events AS e
        WHERE e.stream_id = p_stream AND e.stream_version > p_expected
        ORDER BY e.stream_version;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION {_SIGNATURE} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {_SIGNATURE} TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
