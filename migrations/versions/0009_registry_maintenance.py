"""Registry maintenance (garbage collection) state.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registries") as batch:
        batch.add_column(
            sa.Column("maintenance", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("last_gc_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_gc_report", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registries") as batch:
        batch.drop_column("last_gc_report")
        batch.drop_column("last_gc_at")
        batch.drop_column("maintenance")
