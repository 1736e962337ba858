"""Re-encrypting every stored secret with the first key of CARTRIDGE_SECRET_KEYS.

Every column typed `EncryptedText` is covered, whatever its table. Rows are rotated in small
batches, each in a transaction of its own, so a rotation never holds many row locks for long.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Table, Text, select, type_coerce, update
from sqlalchemy.orm import Session

from app.encryption import EncryptedText, SecretBox, UndecryptableSecret, secret_box
from app.models import Base

BATCH = 200


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table
    column: Column[str]

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column.name}"


def encrypted_columns() -> list[EncryptedColumn]:
    return [
        EncryptedColumn(table, column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, EncryptedText)
    ]


def rotate(session: Session, box: SecretBox | None = None) -> dict[str, int]:
    """Re-encrypts every stored secret with the first key; returns how many per column."""
    box = box or secret_box()
    counts: dict[str, int] = {}
    for encrypted in encrypted_columns():
        table, column = encrypted.table, encrypted.column
        key = table.primary_key.columns.values()[0]
        raw = type_coerce(column, Text)  # the stored token, not the clear value
        after = None
        counts[encrypted.name] = 0
        while True:
            query = select(key, raw).where(column.is_not(None)).order_by(key).limit(BATCH)
            if after is not None:
                query = query.where(key > after)
            rows = session.execute(query).all()
            for row_id, token in rows:
                try:
                    rotated = box.rotate(token)
                except UndecryptableSecret as exc:
                    session.rollback()
                    raise UndecryptableSecret(
                        f"{encrypted.name} of row {row_id}: {exc.message}",
                        column=encrypted.name,
                        row_id=row_id,
                    ) from exc
                session.execute(
                    update(table)
                    .where(key == row_id)
                    .values({column.name: type_coerce(rotated, Text)})
                )
            session.commit()
            counts[encrypted.name] += len(rows)
            if len(rows) < BATCH:
                break
            after = rows[-1][0]
    return counts
