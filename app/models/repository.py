from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.encryption import EncryptedText
from app.models.base import Base, BigId, JsonValue, UtcDateTime, utcnow


class Repository(Base):
    """A GitHub repository Cartridge builds."""

    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    full_name: Mapped[str] = mapped_column(String(200), unique=True)
    clone_url: Mapped[str] = mapped_column(Text)
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    image_name: Mapped[str] = mapped_column(String(255))
    # Needed in clear to verify HMAC signatures: stored encrypted, never rendered by the API or
    # logged.
    webhook_secret: Mapped[str | None] = mapped_column(EncryptedText, default=None)
    # fnmatch patterns; empty means every branch builds.
    branch_filters: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    build_tags: Mapped[bool] = mapped_column(Boolean, default=False)
    base_image: Mapped[str | None] = mapped_column(String(500), default=None)
    cancel_superseded: Mapped[bool] = mapped_column(Boolean, default=True)
    # None means "the default branch only".
    protected_branches: Mapped[list[str] | None] = mapped_column(JsonValue, default=None)
    # Overrides of the installation's image retention policy (keys of `RetentionPolicy`).
    retention: Mapped[dict[str, int] | None] = mapped_column(JsonValue, default=None)
    # Limits of this repository's builds (memory, swap and disk in bytes, cpus, pids), each
    # overriding the installation's CARTRIDGE_BUILD_* setting; None: the installation's.
    build_limits: Mapped[dict[str, int | float] | None] = mapped_column(JsonValue, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    def effective_protected_branches(self) -> list[str]:
        if self.protected_branches is None:
            return [self.default_branch]
        return list(self.protected_branches)
