"""A partial index of each repository's queued and running builds.

Every branch push looks for the builds it supersedes among the repository's active builds;
without this index that search read every build pushed to the branch, or every build the
repository ever had.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    active = sa.text("status IN ('queued', 'running')")
    op.create_index(
        "ix_builds_active",
        "builds",
        ["repository_id", "id"],
        unique=False,
        postgresql_where=active,
        sqlite_where=active,
    )


def downgrade() -> None:
    op.drop_index("ix_builds_active", table_name="builds")
