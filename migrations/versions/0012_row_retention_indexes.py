"""An index of pushes by webhook delivery, for retention.

Deleting an old webhook delivery sets `pushes.webhook_delivery_id` to NULL where it pointed at
it; without this index each deleted delivery would scan the whole pushes table.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_pushes_webhook_delivery_id", "pushes", ["webhook_delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_pushes_webhook_delivery_id", table_name="pushes")
