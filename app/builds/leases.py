"""Leases of running builds: renewed by the build's heartbeat, reaped when its worker is lost,
and handed back by a worker that shuts down. A lost worker's build is queued again as a new
attempt at most `max_lease_retries` times, then `errored`: never `running` forever. The moves
themselves are the build lifecycle's (`app.builds.lifecycle`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from app.builds import lifecycle
from app.config import Settings
from app.models import Build, BuildStatus
from app.models.base import utcnow


@dataclass(frozen=True)
class Ownership:
    """What a heartbeat that failed to renew found: who has the build now."""

    status: BuildStatus
    attempt: int
    cancel_reason: str | None


def renew(session: Session, build_id: int, attempt: int, *, lease_seconds: float) -> bool:
    """Extends running attempt `attempt`'s lease; False if the attempt no longer owns the build
    (cancelled, superseded, handed back, or taken over after its lease expired)."""
    now = utcnow()
    renewed = session.execute(
        update(Build)
        .where(
            Build.id == build_id,
            Build.attempt == attempt,
            Build.status == BuildStatus.RUNNING.value,
        )
        .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return bool(renewed)


def ownership(session: Session, build_id: int) -> Ownership | None:
    row = session.execute(
        select(Build.status, Build.attempt, Build.cancel_reason).where(Build.id == build_id)
    ).one_or_none()
    if row is None:
        return None
    return Ownership(BuildStatus(row.status), row.attempt, row.cancel_reason)


@dataclass
class ReapResult:
    requeued: list[int] = field(default_factory=list)
    errored: list[int] = field(default_factory=list)


def reap_expired_leases(
    session: Session, settings: Settings, *, now: datetime | None = None
) -> ReapResult:
    """Retries (or, past `max_lease_retries`, errors) running builds whose worker stopped
    renewing the lease. The caller commits."""
    now = now or utcnow()
    never_renewed = and_(
        Build.lease_expires_at.is_(None),
        Build.started_at < now - timedelta(seconds=settings.lease_seconds),
    )
    expired = session.execute(
        select(Build.id, Build.attempt, Build.lease_retries, Build.build_host, Build.heartbeat_at)
        .where(
            Build.status == BuildStatus.RUNNING.value,
            # A build waiting for its replica quorum has no worker, and needs none.
            Build.quorum_deadline_at.is_(None),
            or_(Build.lease_expires_at < now, never_renewed),
        )
        .order_by(Build.id)
        .with_for_update(skip_locked=True)
    ).all()
    result = ReapResult()
    for row in expired:
        last = row.heartbeat_at.isoformat(timespec="seconds") if row.heartbeat_at else "never"
        lost = f"worker lost: no heartbeat from {row.build_host or 'its build host'} since {last}"
        if row.lease_retries < settings.max_lease_retries:
            # The row is locked (FOR UPDATE) and the move is conditional on the attempt, so the
            # count read above is still the build's.
            if lifecycle.requeue(
                session, row.id, row.attempt, note=lost, lease_retries=row.lease_retries + 1
            ):
                result.requeued.append(row.id)
            continue
        error = f"{lost} (retried {row.lease_retries} times)"
        if lifecycle.error_lost(session, row.id, row.attempt, error=error, at=now):
            result.errored.append(row.id)
    return result


def hand_back(session: Session, build_id: int, settings: Settings, *, note: str) -> bool:
    """Requeues `build_id` if it is running on this host (a shutting-down worker's build)."""
    attempt = session.scalar(
        select(Build.attempt).where(
            Build.id == build_id,
            Build.status == BuildStatus.RUNNING.value,
            Build.build_host == settings.host_name,
        )
    )
    if attempt is None:
        return False
    return lifecycle.requeue(session, build_id, attempt, note=note)
