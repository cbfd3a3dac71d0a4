"""Backbone: tenant root, append-only events, outbox, checkpoints, tracking, leases; API keys.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PLATFORM_TENANT = "00000000-0000-0000-0000-000000000000"

UPGRADE = f"""
CREATE SCHEMA IF NOT EXISTS tenants;
CREATE SCHEMA IF NOT EXISTS eventstore;

-- The root every tenant foreign key points at. Written in the same transaction as the tenant's
-- first event; never rebuilt, so foreign keys to it stay valid while read models are rebuilt.
CREATE TABLE tenants.tenant_ids (
    tenant_id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Events about the platform itself (not about any customer) belong to this reserved tenant.
INSERT INTO tenants.tenant_ids (tenant_id) VALUES ('{PLATFORM_TENANT}');

-- CACHE 1 (the default) matters: values are handed out in time order across sessions, which the
-- gap-free reader relies on (see architecture/decisions/0002-gap-free-reading.md).
CREATE SEQUENCE eventstore.events_position_seq AS bigint CACHE 1;

CREATE TABLE eventstore.events (
    position bigint PRIMARY KEY,
    -- The writer's transaction id, taken before its position (see the append statement).
    tx_id xid8 NOT NULL,
    event_id uuid NOT NULL UNIQUE,
    tenant_id uuid NOT NULL REFERENCES tenants.tenant_ids (tenant_id),
    stream_id text NOT NULL,
    stream_version integer NOT NULL CHECK (stream_version > 0),
    type text NOT NULL,
    schema_version integer NOT NULL CHECK (schema_version > 0),
    occurred_at timestamptz NOT NULL,
    correlation_id uuid NOT NULL,
    causation_id uuid,
    actor jsonb NOT NULL,
    payload jsonb NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_tenant_position_idx ON eventstore.events (tenant_id, position);
CREATE INDEX events_tenant_type_position_idx ON eventstore.events (tenant_id, type, position);

CREATE FUNCTION eventstore.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eventstore.events is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION eventstore.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON eventstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_change();

-- One row per event still to be published. The relay deletes a row only after the broker
-- confirmed the message, so the table stays as small as the relay's backlog.
CREATE TABLE eventstore.outbox (
    position bigint PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    next_attempt_at timestamptz
);

-- Projection checkpoints: the last position whose effects are committed, written in the same
-- transaction as those effects.
CREATE TABLE eventstore.checkpoints (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    generation integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz
);

-- Consumer tracking records: (consumer, event) applied, written with the consumer's effect.
CREATE TABLE eventstore.tracking (
    consumer text NOT NULL,
    event_id uuid NOT NULL,
    position bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Where each side-effecting consumer started: events at or below the mark are history and are
-- acknowledged without effect (the replay gate).
CREATE TABLE eventstore.consumer_marks (
    consumer text PRIMARY KEY,
    start_position bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Heartbeats of singleton loops (the relay leader, projection runners), for health and metrics.
CREATE TABLE eventstore.heartbeats (
    name text PRIMARY KEY,
    holder text NOT NULL,
    beat_at timestamptz NOT NULL DEFAULT now(),
    processed bigint NOT NULL DEFAULT 0
);

-- API keys: the write-side lookup index of the tenants module, changed in the same transaction
-- as the key's events. Only a keyed hash is kept; the key itself is shown once.
CREATE TABLE tenants.api_keys (
    tenant_id uuid NOT NULL REFERENCES tenants.tenant_ids (tenant_id),
    key_id uuid NOT NULL,
    prefix text NOT NULL,
    key_hash bytea NOT NULL,
    name text NOT NULL,
    scopes text[] NOT NULL,
    last_four text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    PRIMARY KEY (tenant_id, key_id),
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix)
);
"""

DOWNGRADE = """
DROP SCHEMA eventstore CASCADE;
DROP SCHEMA tenants CASCADE;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
