from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UtcDateTime, utcnow


class Registry(Base):
    """A registry replica (CNCF Distribution) images are pushed to."""

    __tablename__ = "registries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # host:port as Docker names it, e.g. "127.0.0.1:5000"; plain HTTP only on loopback.
    url: Mapped[str] = mapped_column(String(500))
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    # Declared in the settings (CARTRIDGE_REGISTRIES): changed there, never through the API.
    declared: Mapped[bool] = mapped_column(Boolean, default=False)
    healthy: Mapped[bool] = mapped_column(Boolean, default=True)
    last_checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Out of the push set and the proxy while its garbage is collected (`cartridge registry gc`).
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    last_gc_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    last_gc_report: Mapped[str | None] = mapped_column(Text, default=None)
    # A repair job holds this lease so that overlapping runs do not copy the same images twice.
    repair_lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
