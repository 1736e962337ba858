from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, StrEnum, UtcDateTime, utcnow


class TokenScope(enum.StrEnum):
    """What a token may do; each scope includes the ones before it.

    read: every GET (when reads need a token at all); write: retry, cancel and sync builds;
    admin: register and configure repositories and registries, manage tokens.
    """

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def includes(self, other: TokenScope) -> bool:
        order = list(TokenScope)
        return order.index(self) >= order.index(other)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[TokenScope] = mapped_column(StrEnum(TokenScope, 16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now
