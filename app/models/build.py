from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, StrEnum, UtcDateTime, utcnow


class BuildStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ERRORED = "errored"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.ERRORED, BuildStatus.CANCELLED}
)
ACTIVE_STATUSES = frozenset({BuildStatus.QUEUED, BuildStatus.RUNNING})
_ACTIVE_PREDICATE = "status IN ('queued', 'running')"
_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in BuildStatus)


class Build(Base):
    """The build of one commit of one repository. A retry is a new attempt of the same row."""

    __tablename__ = "builds"
    __table_args__ = (
        UniqueConstraint("repository_id", "sha"),
        CheckConstraint(f"status IN ({_STATUS_VALUES})", name="status_known"),
        Index("ix_builds_status_lease", "status", "lease_expires_at"),
        Index("ix_builds_repository_id_id", "repository_id", "id"),
        # Superseding looks for a repository's active builds on every push: a partial index
        # stays as small as the number of builds in flight. Queries match its predicate with
        # `is_active()`, spelled with literals so that prepared statements can use it.
        Index(
            "ix_builds_active",
            "repository_id",
            "id",
            postgresql_where=text(_ACTIVE_PREDICATE),
            sqlite_where=text(_ACTIVE_PREDICATE),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    sha: Mapped[str] = mapped_column(String(40))
    status: Mapped[BuildStatus] = mapped_column(
        StrEnum(BuildStatus, 16), default=BuildStatus.QUEUED
    )
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Lease expiries that led to a retry during the current attempt chain.
    lease_retries: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    build_host: Mapped[str | None] = mapped_column(String(255), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    cancel_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    superseded_by_push_id: Mapped[int | None] = mapped_column(
        ForeignKey("pushes.id", ondelete="SET NULL", use_alter=True), default=None
    )
    # A queued build whose job the broker lost (a restart of Redis) is sent again.
    redispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    redispatches: Mapped[int] = mapped_column(Integer, default=0)
    # A running build whose image is pushed but not yet on enough replicas waits until then for
    # the repair job to complete the quorum; no worker holds it meanwhile.
    quorum_deadline_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def is_active() -> ColumnElement[bool]:
    """`builds.status IN ('queued', 'running')` with the values as literals: a bound parameter
    would hide from the planner that `ix_builds_active` covers the query."""
    return Build.status.in_(
        [literal_column(f"'{status.value}'") for status in sorted(ACTIVE_STATUSES)]
    )
