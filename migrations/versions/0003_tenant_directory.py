"""Tenant directory: generation 1 of the `tenant_directory` projection and its stable view.

The tables come from the projection's own definition (`metachat.tenants.projections`), so a
fresh database gets the current shape; an existing database gets a new shape by rebuilding
(`metachat projections rebuild tenant_directory`), never by altering a generation in place.
The runner fills the model from position 0.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from metachat.eventstore.projection import install, uninstall
from metachat.tenants.projections import TENANT_DIRECTORY

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    install(op.get_bind(), TENANT_DIRECTORY)


def downgrade() -> None:
    uninstall(op.get_bind(), TENANT_DIRECTORY)
