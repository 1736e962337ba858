"""API tokens have a scope (read, write, admin) and may expire.

Tokens that exist already could do everything: they become admin tokens, so nothing that worked
stops working; narrower tokens are created next to them and the old ones revoked.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(
            sa.Column("scope", sa.String(length=16), nullable=False, server_default="admin")
        )
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint("scope_known", "scope IN ('read', 'write', 'admin')")
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("scope", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint("scope_known", type_="check")
        batch.drop_column("expires_at")
        batch.drop_column("scope")
