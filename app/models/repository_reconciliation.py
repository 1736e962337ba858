from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JsonValue, StrEnum, UtcDateTime


class ReconcileOutcome(enum.StrEnum):
    """What the last comparison of a repository's branch heads with GitHub's found."""

    ADOPTED = "adopted"  # the first pass: GitHub's heads taken as known, nothing else built
    UNCHANGED = "unchanged"  # GitHub answered 304: nothing moved since the last listing
    IN_SYNC = "in_sync"  # the listing changed, but every head was already known
    RECOVERED = "recovered"  # pushes (or deletions) Cartridge had missed were recorded
    RATE_LIMITED = "rate_limited"  # GitHub asked to wait; the repository is checked later
    FAILED = "failed"  # GitHub refused or failed; `summary.error` says why


class RepositoryReconciliation(Base):
    """A repository's last reconciliation, and the branch listing it was made from.

    `listing` keeps each page GitHub sent (its URL, ETag and heads), so the next pass can ask
    with If-None-Match and still know every branch when only some pages changed."""

    __tablename__ = "repository_reconciliations"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    reconciled_at: Mapped[datetime] = mapped_column(UtcDateTime)
    outcome: Mapped[ReconcileOutcome] = mapped_column(StrEnum(ReconcileOutcome, 20))
    summary: Mapped[dict[str, Any]] = mapped_column(JsonValue, default=dict)
    listing: Mapped[list[dict[str, Any]]] = mapped_column(JsonValue, default=list)
