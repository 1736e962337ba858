"""Column names that each mean one thing.

A webhook delivery's `X-GitHub-Delivery` is its `guid`; a push points at its
`webhook_delivery_id`; what Cartridge did with a push is its `decision`; an image's name in the
registries is `name`; a commit status is sent (`send_state`, `sent_at`), never "delivered".

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = [
    ("webhook_deliveries", "delivery_id", "guid"),
    ("pushes", "delivery_id", "webhook_delivery_id"),
    ("pushes", "outcome", "decision"),
    ("images", "repository", "name"),
    ("status_posts", "delivery", "send_state"),
    ("status_posts", "delivered_at", "sent_at"),
]


def _rename(renames: list[tuple[str, str, str]]) -> None:
    for table, old, new in renames:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(old, new_column_name=new)


def _rename_constraints(old_guid: str, old_fk: str, guid: str, fk: str) -> None:
    # Dropped and created again rather than renamed: SQLite's batch mode copies a table with
    # the constraint names it had.
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_constraint(f"uq_webhook_deliveries_{old_guid}", type_="unique")
        batch.create_unique_constraint(f"uq_webhook_deliveries_{guid}", [guid])
    with op.batch_alter_table("pushes") as batch:
        batch.drop_constraint(f"fk_pushes_{old_fk}_webhook_deliveries", type_="foreignkey")
        batch.create_foreign_key(
            f"fk_pushes_{fk}_webhook_deliveries",
            "webhook_deliveries",
            [fk],
            ["id"],
            ondelete="SET NULL",
        )


def upgrade() -> None:
    _rename(RENAMES)
    _rename_constraints("delivery_id", "delivery_id", "guid", "webhook_delivery_id")
    op.execute("UPDATE status_posts SET send_state = 'sent' WHERE send_state = 'delivered'")
    op.execute(
        "UPDATE outbox SET task_name = 'cartridge.statuses.send' "
        "WHERE task_name = 'cartridge.statuses.deliver'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE outbox SET task_name = 'cartridge.statuses.deliver' "
        "WHERE task_name = 'cartridge.statuses.send'"
    )
    op.execute("UPDATE status_posts SET send_state = 'delivered' WHERE send_state = 'sent'")
    _rename([(table, new, old) for table, old, new in RENAMES])
    _rename_constraints("guid", "webhook_delivery_id", "delivery_id", "delivery_id")
