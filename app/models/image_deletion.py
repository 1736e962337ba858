from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, StrEnum, UtcDateTime, utcnow


class DeletionState(enum.StrEnum):
    QUEUED = "queued"  # waiting for (another) try
    DONE = "done"  # the replica answered 202 (deleted) or 404 (it never had it)
    REFUSED = "refused"  # the replica has deletes disabled (405): an operator must act
    FAILED = "failed"  # tries used up


class ImageDeletion(Base):
    """The audit record of deleting one image's manifest, by digest, from one replica."""

    __tablename__ = "image_deletions"
    __table_args__ = (Index("ix_image_deletions_image_id", "image_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    registry_id: Mapped[int | None] = mapped_column(
        ForeignKey("registries.id", ondelete="SET NULL"), default=None
    )
    registry_name: Mapped[str] = mapped_column(String(100))
    image_name: Mapped[str] = mapped_column(String(255))
    manifest_digest: Mapped[str] = mapped_column(String(100))
    # Which retention rule let it go, in words ("older than 30 days, not among the last 10 ...").
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[DeletionState] = mapped_column(
        StrEnum(DeletionState, 16), default=DeletionState.QUEUED
    )
    tries: Mapped[int] = mapped_column(Integer, default=0)
    response_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
