from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, StrEnum, UtcDateTime, utcnow


class CommitState(enum.StrEnum):
    """The state of a GitHub commit status."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


class SendState(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


class StatusPost(Base):
    """A commit status owed to GitHub, recorded with the build transition that caused it."""

    __tablename__ = "status_posts"
    __table_args__ = (
        Index("ix_status_posts_build_order", "build_id", "id"),
        # The periodic re-drive and the rate-limit pause look only at unsent posts.
        Index("ix_status_posts_due", "send_state", "next_try_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[CommitState] = mapped_column(StrEnum(CommitState, 16))
    context: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(140))
    target_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    # queued | sent | skipped (superseded or unchanged, see skip_reason) | failed (permanent)
    send_state: Mapped[SendState] = mapped_column(StrEnum(SendState, 16), default=SendState.QUEUED)
    skip_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    response_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
