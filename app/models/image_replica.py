from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UtcDateTime, utcnow


class ImageReplica(Base):
    """Whether one image is verified present, by digest, on one registry replica."""

    __tablename__ = "image_replicas"
    __table_args__ = (UniqueConstraint("image_id", "registry_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    # present | missing
    state: Mapped[str] = mapped_column(String(16), default="missing")
    verified_digest: Mapped[str | None] = mapped_column(String(100), default=None)
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
