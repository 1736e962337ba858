from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, StrEnum, UtcDateTime, utcnow


class PushDecision(enum.StrEnum):
    """What Cartridge did with a push."""

    BUILT = "built"  # its SHA's build was queued, re-queued or shared
    DELETED = "deleted"  # a branch or tag deletion: recorded, nothing built
    TAG_SKIPPED = "tag_skipped"  # a tag push while tags are not built
    FILTERED = "filtered"  # a branch the repository's filters exclude
    IGNORED = "ignored"  # a ref that is neither a branch nor a tag


class Push(Base):
    """A ref update as GitHub reported it; the id gives the received order of a branch's heads."""

    __tablename__ = "pushes"
    __table_args__ = (
        Index("ix_pushes_repository_branch_order", "repository_id", "branch", "id"),
        Index("ix_pushes_build_id", "build_id"),
        # Retention deletes old deliveries, which sets this column to NULL where it matches.
        Index("ix_pushes_webhook_delivery_id", "webhook_delivery_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    webhook_delivery_id: Mapped[int | None] = mapped_column(
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
    decision: Mapped[PushDecision] = mapped_column(
        StrEnum(PushDecision, 40), default=PushDecision.BUILT
    )
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
