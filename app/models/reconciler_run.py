from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UtcDateTime, utcnow


class ReconcilerRun(Base):
    """One pass of the reconciler over every repository.

    `running` is true while the pass runs and NULL afterwards; it is unique, so two passes never
    run at once (NULLs are distinct in a unique constraint)."""

    __tablename__ = "reconciler_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    running: Mapped[bool | None] = mapped_column(Boolean, unique=True, default=True)
    repositories: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    recovered_pushes: Mapped[int] = mapped_column(Integer, default=0)
    redeliveries: Mapped[int] = mapped_column(Integer, default=0)
    # GitHub asked the credential to wait until then: the next pass starts no earlier.
    rate_limited_until: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
