from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UtcDateTime, utcnow


class HookRedelivery(Base):
    """A failed GitHub App hook delivery Cartridge asked GitHub to send again, by event GUID,
    so that one that keeps failing is asked for a bounded number of times."""

    __tablename__ = "hook_redeliveries"

    guid: Mapped[str] = mapped_column(String(100), primary_key=True)
    # GitHub's id of the attempt that was redelivered (each attempt has its own).
    delivery_id: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(100))
    requests: Mapped[int] = mapped_column(Integer, default=1)
    last_requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
