"""Conversation read models: generation 1 of `conversation_list` and `conversation_messages`.

The tables come from the projections' own definitions (`metachat.conversations.projections`);
`conversation_messages` is partitioned by month and its setup creates the current month and
the next three (the projector's hourly job keeps creating them ahead; the handler creates any
other month on demand). The views live in the `conversations` schema. The runner fills both
models from position 0.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from metachat.conversations.projections import CONVERSATION_LIST, CONVERSATION_MESSAGES
from metachat.eventstore.projection import install, uninstall

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS conversations")
    install(op.get_bind(), CONVERSATION_LIST)
    install(op.get_bind(), CONVERSATION_MESSAGES)


def downgrade() -> None:
    uninstall(op.get_bind(), CONVERSATION_MESSAGES)
    uninstall(op.get_bind(), CONVERSATION_LIST)
