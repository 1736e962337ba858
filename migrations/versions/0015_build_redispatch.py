"""When a queued build's job was last sent again because the broker no longer held it, and until
when a built image waits for its replica quorum.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("redispatched_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("redispatches", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("quorum_deadline_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("quorum_deadline_at")
        batch.drop_column("redispatches")
        batch.drop_column("redispatched_at")
