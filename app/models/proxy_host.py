from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UtcDateTime, utcnow


class ProxyHost(Base):
    """A host running the pull proxy (`cartridge proxy serve`) and the config it last applied."""

    __tablename__ = "proxy_hosts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    host_name: Mapped[str] = mapped_column(String(255), unique=True)
    listen: Mapped[str] = mapped_column(String(255))
    # The config nginx runs: its sha256 and when it was loaded.
    config_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    applied_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    reloads: Mapped[int] = mapped_column(Integer, default=0)
    # The last time a config was rendered and compared, and why the newest one was refused.
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
