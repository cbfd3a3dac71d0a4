"""Checkpoints record where the gap-free reader is holding (R2), so /metrics can export it.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE eventstore.checkpoints ADD COLUMN held_at bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE eventstore.checkpoints DROP COLUMN held_at")
