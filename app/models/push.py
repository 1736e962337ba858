from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, text, true
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, StrEnum, UtcDateTime, utcnow


class PushDecision(enum.StrEnum):
    """What Cartridge did with a push."""

    BUILT = "built"  # its SHA's build was queued, re-queued or shared
    DELETED = "deleted"  # a branch or tag deletion: recorded, nothing built
    TAG_SKIPPED = "tag_skipped"  # a tag push while tags are not built
    FILTERED = "filtered"  # a branch the repository's filters exclude
    IGNORED = "ignored"  # a ref that is neither a branch nor a tag
    # Older than the branch's head when it arrived: history only, its SHA not built for it.
    SUPERSEDED = "superseded"


class PushSource(enum.StrEnum):
    """How Cartridge learned of a push."""

    WEBHOOK = "webhook"  # a push delivery from GitHub
    RECONCILER = "reconciler"  # recovered: GitHub's branch head differed from the known one


_RECOVERED_PREDICATE = "source = 'reconciler'"


class Push(Base):
    """A ref update as GitHub reported it.

    `position` orders a branch's pushes by its history, not by arrival: each push names the head
    it replaced (`before_sha`), and `app.builds.heads` places it accordingly. `linked` is false
    for a push whose place could not be told from the chain (a push in between is missing): it is
    placed again when the chain reaches its `before_sha`."""

    __tablename__ = "pushes"
    __table_args__ = (
        Index("ix_pushes_repository_branch_order", "repository_id", "branch", "id"),
        Index("ix_pushes_build_id", "build_id"),
        # Latest green walks a branch's history backwards from its newest push.
        Index("ix_pushes_branch_history", "repository_id", "branch", "position", "id"),
        # Placing a push looks up the pushes that continued from a commit.
        Index("ix_pushes_continuations", "repository_id", "branch", "before_sha"),
        # Recovered pushes are few; /metrics counts them on every scrape.
        Index(
            "ix_pushes_recovered",
            "id",
            postgresql_where=text(_RECOVERED_PREDICATE),
            sqlite_where=text(_RECOVERED_PREDICATE),
        ),
        # Retention deletes old deliveries, which sets this column to NULL where it matches.
        Index("ix_pushes_webhook_delivery_id", "webhook_delivery_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    webhook_delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="SET NULL"), default=None
    )
    ref: Mapped[str] = mapped_column(String(500))
    branch: Mapped[str | None] = mapped_column(String(500), default=None)
    tag: Mapped[str | None] = mapped_column(String(500), default=None)
    before_sha: Mapped[str] = mapped_column(String(40))
    after_sha: Mapped[str] = mapped_column(String(40))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    pusher: Mapped[str | None] = mapped_column(String(255), default=None)
    head_commit_message: Mapped[str | None] = mapped_column(String(1000), default=None)
    build_id: Mapped[int | None] = mapped_column(
        ForeignKey("builds.id", ondelete="SET NULL"), default=None
    )
    decision: Mapped[PushDecision] = mapped_column(
        StrEnum(PushDecision, 40), default=PushDecision.BUILT
    )
    position: Mapped[int | None] = mapped_column(BigInteger, default=None)
    linked: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # When GitHub says the push happened (the payload's repository.pushed_at), if it says.
    pushed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    source: Mapped[PushSource] = mapped_column(
        StrEnum(PushSource, 20), default=PushSource.WEBHOOK, server_default=PushSource.WEBHOOK.value
    )
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
