from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UtcDateTime, utcnow


class BuildEvent(Base):
    """A change of a build's status, in the order it was recorded: what `GET /api/v1/events`
    replays to a client that reconnects. Written in the transaction that changed the build."""

    __tablename__ = "build_events"
    __table_args__ = (Index("ix_build_events_build_id", "build_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    # The status the build reached, and on which attempt.
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
