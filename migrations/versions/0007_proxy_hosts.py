"""Registries declared in the settings, and the pull proxy hosts with the config they run.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("registries") as batch:
        batch.add_column(
            sa.Column("declared", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "proxy_hosts",
        sa.Column("id", ID, nullable=False),
        sa.Column("host_name", sa.String(length=255), nullable=False),
        sa.Column("listen", sa.String(length=255), nullable=False),
        sa.Column("config_sha256", sa.String(length=64), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reloads", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proxy_hosts")),
        sa.UniqueConstraint("host_name", name=op.f("uq_proxy_hosts_host_name")),
    )


def downgrade() -> None:
    op.drop_table("proxy_hosts")
    with op.batch_alter_table("registries") as batch:
        batch.drop_column("declared")
