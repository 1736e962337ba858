from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UtcDateTime, utcnow


class KnownBranchHead(Base):
    """The commit Cartridge believes a branch points at, and the push that said so.

    Webhooks and the reconciler move it; the reconciler compares it with the heads GitHub lists.
    `sha` is None once the branch was deleted."""

    __tablename__ = "branch_heads"
    # Superseding asks whether a build is still another branch's head.
    __table_args__ = (Index("ix_branch_heads_sha", "repository_id", "sha"),)

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    branch: Mapped[str] = mapped_column(String(500), primary_key=True)
    sha: Mapped[str | None] = mapped_column(String(40), default=None)
    push_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("pushes.id", ondelete="SET NULL"), default=None
    )
    # The head push's place in the branch's history (`pushes.position`).
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
