"""The reconciler and the order of a branch's history: known branch heads, each repository's
last reconciliation and branch listing, passes of the reconciler, redeliveries asked of GitHub,
how each push was learned of, and each push's place in its branch's history.

Existing pushes keep the order they were received in (position = id); known heads start as each
branch's latest recorded push.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("pushes") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=20), server_default="webhook", nullable=False)
        )
        batch.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("linked", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(sa.Column("pushed_at", TIMESTAMP, nullable=True))
    op.execute("UPDATE pushes SET position = id WHERE branch IS NOT NULL")
    op.create_index(
        "ix_pushes_branch_history",
        "pushes",
        ["repository_id", "branch", "position", "id"],
        unique=False,
    )
    op.create_index(
        "ix_pushes_continuations",
        "pushes",
        ["repository_id", "branch", "before_sha"],
        unique=False,
    )
    recovered = sa.text("source = 'reconciler'")
    op.create_index(
        "ix_pushes_recovered",
        "pushes",
        ["id"],
        unique=False,
        postgresql_where=recovered,
        sqlite_where=recovered,
    )
    op.create_table(
        "branch_heads",
        sa.Column("repository_id", ID, nullable=False),
        sa.Column("branch", sa.String(length=500), nullable=False),
        sa.Column("sha", sa.String(length=40), nullable=True),
        sa.Column("push_id", ID, nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_branch_heads_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["push_id"],
            ["pushes.id"],
            name=op.f("fk_branch_heads_push_id_pushes"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("repository_id", "branch", name=op.f("pk_branch_heads")),
    )
    op.create_index("ix_branch_heads_sha", "branch_heads", ["repository_id", "sha"], unique=False)
    op.execute(
        "INSERT INTO branch_heads (repository_id, branch, sha, push_id, position, updated_at) "
        "SELECT p.repository_id, p.branch, CASE WHEN p.deleted THEN NULL ELSE p.after_sha END, "
        "p.id, p.id, p.received_at FROM pushes p WHERE p.branch IS NOT NULL AND p.id = "
        "(SELECT max(q.id) FROM pushes q "
        "WHERE q.repository_id = p.repository_id AND q.branch = p.branch)"
    )
    op.create_table(
        "repository_reconciliations",
        sa.Column("repository_id", ID, nullable=False),
        sa.Column("reconciled_at", TIMESTAMP, nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("summary", JSON_VALUE, nullable=False),
        sa.Column("listing", JSON_VALUE, nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_repository_reconciliations_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", name=op.f("pk_repository_reconciliations")),
    )
    op.create_table(
        "reconciler_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("running", sa.Boolean(), nullable=True),
        sa.Column("repositories", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("recovered_pushes", sa.Integer(), nullable=False),
        sa.Column("redeliveries", sa.Integer(), nullable=False),
        sa.Column("rate_limited_until", TIMESTAMP, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciler_runs")),
        sa.UniqueConstraint("running", name=op.f("uq_reconciler_runs_running")),
    )
    op.create_table(
        "hook_redeliveries",
        sa.Column("guid", sa.String(length=100), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=100), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("last_requested_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("guid", name=op.f("pk_hook_redeliveries")),
    )


def downgrade() -> None:
    op.drop_table("hook_redeliveries")
    op.drop_table("reconciler_runs")
    op.drop_table("repository_reconciliations")
    op.drop_index("ix_branch_heads_sha", table_name="branch_heads")
    op.drop_table("branch_heads")
    op.drop_index("ix_pushes_recovered", table_name="pushes")
    op.drop_index("ix_pushes_continuations", table_name="pushes")
    op.drop_index("ix_pushes_branch_history", table_name="pushes")
    with op.batch_alter_table("pushes") as batch:
        batch.drop_column("pushed_at")
        batch.drop_column("linked")
        batch.drop_column("position")
        batch.drop_column("source")
