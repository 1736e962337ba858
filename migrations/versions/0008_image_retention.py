"""Image retention: pins, pulls through the proxy, deletions by digest with an audit row each.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("last_pulled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deleting_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("retention", JSON, nullable=True))
    op.create_table(
        "image_deletions",
        sa.Column("id", ID, nullable=False),
        sa.Column("image_id", ID, nullable=False),
        sa.Column("registry_id", ID, nullable=True),
        sa.Column("registry_name", sa.String(length=100), nullable=False),
        sa.Column("image_name", sa.String(length=255), nullable=False),
        sa.Column("manifest_digest", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_image_deletions_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_image_deletions_registry_id_registries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_deletions")),
    )
    op.create_index("ix_image_deletions_image_id", "image_deletions", ["image_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_image_deletions_image_id", table_name="image_deletions")
    op.drop_table("image_deletions")
    with op.batch_alter_table("repositories") as batch:
        batch.drop_column("retention")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("deleting_at")
        batch.drop_column("last_pulled_at")
        batch.drop_column("pinned")
