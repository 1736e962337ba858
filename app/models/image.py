from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, JsonValue, UtcDateTime, utcnow


class Image(Base):
    """The image a build produced, as the registry confirmed it."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"), unique=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # The image's name in the registries (`octo-app`), the repository's `image_name`.
    name: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str] = mapped_column(String(128))
    manifest_digest: Mapped[str] = mapped_column(String(100), index=True)
    config_digest: Mapped[str] = mapped_column(String(100))
    media_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    # [{"digest": ..., "size": ..., "media_type": ...}] in manifest order.
    layers: Mapped[list[dict[str, Any]]] = mapped_column(JsonValue, default=list)
    roles: Mapped[dict[str, str]] = mapped_column(JsonValue, default=dict)
    labels: Mapped[dict[str, str]] = mapped_column(JsonValue, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Retention: a pinned image is always kept; pulls through the proxy keep an image too.
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    last_pulled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # Set when retention chose to delete it: from then on nothing offers, repairs or pins it.
    deleting_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # Set once every replica confirmed the manifest gone (or had never held it).
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
