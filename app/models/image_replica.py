from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, StrEnum, UtcDateTime, utcnow


class ReplicaState(enum.StrEnum):
    PRESENT = "present"  # verified on the replica by manifest digest
    MISSING = "missing"  # not verified there (never copied, or the last copy failed)


class ImageReplica(Base):
    """Whether one image is verified present, by digest, on one registry replica."""

    __tablename__ = "image_replicas"
    __table_args__ = (UniqueConstraint("image_id", "registry_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    state: Mapped[ReplicaState] = mapped_column(
        StrEnum(ReplicaState, 16), default=ReplicaState.MISSING
    )
    verified_digest: Mapped[str | None] = mapped_column(String(100), default=None)
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
