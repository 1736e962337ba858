from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UtcDateTime, utcnow


class Push(Base):
    """A ref update as GitHub reported it; the id gives the received order of a branch's heads."""

    __tablename__ = "pushes"
    __table_args__ = (
        Index("ix_pushes_repository_branch_order", "repository_id", "branch", "id"),
        Index("ix_pushes_build_id", "build_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="SET NULL"), default=None
    )
    ref: Mapped[str] = mapped_column(String(500))
    branch: Mapped[str | None] = mapped_column(String(500), default=None)
    tag: Mapped[str | None] = mapped_column(String(500), default=None)
    before_sha: Mapped[str] = mapped_column(String(40))
    after_sha: Mapped[str] = mapped_column(String(40))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    pusher: Mapped[str | None] = mapped_column(String(255), default=None)
    head_commit_message: Mapped[str | None] = mapped_column(String(1000), default=None)
    build_id: Mapped[int | None] = mapped_column(
        ForeignKey("builds.id", ondelete="SET NULL"), default=None
    )
    # built | deleted | tag_skipped | filtered
    outcome: Mapped[str] = mapped_column(String(40), default="built")
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
