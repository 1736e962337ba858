from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, StrEnum, UtcDateTime, utcnow


class DeliveryOutcome(enum.StrEnum):
    """What a webhook delivery led to, stored in `webhook_deliveries.outcome` and returned to
    GitHub."""

    ACCEPTED = "accepted"  # a push whose build is queued (new, re-queued or shared)
    RECORDED = "recorded"  # a push recorded without a build: branch deletion, tag, other ref
    FILTERED = "filtered"  # a push to a branch the repository's filters exclude
    UNKNOWN_REPOSITORY = "unknown_repository"
    PING = "ping"
    IGNORED = "ignored"  # an event Cartridge does not act on
    DUPLICATE = "duplicate"  # only in responses: a redelivery of a GUID already recorded


class WebhookDelivery(Base):
    """One GitHub delivery, keyed by `X-GitHub-Delivery` so a redelivery does nothing twice."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # X-GitHub-Delivery: GitHub's id of the delivery, the same on a redelivery.
    guid: Mapped[str] = mapped_column(String(100), unique=True)
    event: Mapped[str] = mapped_column(String(100))
    repository_full_name: Mapped[str | None] = mapped_column(String(200), default=None)
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="SET NULL"), default=None
    )
    outcome: Mapped[DeliveryOutcome] = mapped_column(StrEnum(DeliveryOutcome, 40))
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
