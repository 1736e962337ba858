"""Repository webhook secrets are stored encrypted (Fernet, CARTRIDGE_SECRET_KEYS).

The secrets stored in clear until now are encrypted in place with the first key; a Fernet token
is longer than the secret, so the column becomes TEXT.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.encryption import secret_box

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SELECT = sa.text("SELECT id, webhook_secret FROM repositories WHERE webhook_secret IS NOT NULL")
UPDATE = sa.text("UPDATE repositories SET webhook_secret = :secret WHERE id = :id")


def _rewrite(change: object) -> None:
    connection = op.get_bind()
    rows = connection.execute(SELECT).all()
    for row_id, value in rows:
        connection.execute(UPDATE, {"id": row_id, "secret": change(value)})  # type: ignore[operator]


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.alter_column("webhook_secret", type_=sa.Text(), existing_type=sa.String(length=255))
    _rewrite(secret_box().encrypt)


def downgrade() -> None:
    _rewrite(secret_box().decrypt)
    with op.batch_alter_table("repositories") as batch:
        batch.alter_column("webhook_secret", type_=sa.String(length=255), existing_type=sa.Text())
