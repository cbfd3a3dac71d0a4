"""Analytics: per-tenant daily activity read model; tracking index for consumer lag.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE SCHEMA IF NOT EXISTS analytics;

-- How many events of each type a tenant produced per UTC day. Built by the broker consumer
-- `analytics.activity` with an upsert-increment, which is not idempotent by itself: the
-- consumer's tracking row, written in the same transaction, is what makes it exactly-once.
CREATE TABLE analytics.daily_activity (
    tenant_id uuid NOT NULL REFERENCES tenants.tenant_ids (tenant_id),
    day date NOT NULL,
    event_type text NOT NULL,
    count bigint NOT NULL CHECK (count > 0),
    PRIMARY KEY (tenant_id, day, event_type)
);

-- Consumer lag reads the last tracked position per consumer; without this index that is a
-- scan of every tracking row the consumer ever wrote.
CREATE INDEX tracking_consumer_position_idx ON eventstore.tracking (consumer, position);
"""

DOWNGRADE = """
DROP INDEX eventstore.tracking_consumer_position_idx;
DROP SCHEMA analytics CASCADE;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
