"""Giving a running build back to the queue: after its worker was lost (its lease expired) or when
a shutting-down worker ran out of grace time. Retries after lost workers are bounded; past the
bound the build is `errored`, never `running` forever."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK
from app.builds import logs
from app.builds.transitions import transition
from app.config import Settings
from app.models import Build, BuildStatus
from app.models.base import utcnow
from app.outbox.service import enqueue

RUNNING = {BuildStatus.RUNNING}


@dataclass
class ReapResult:
    requeued: list[int] = field(default_factory=list)
    errored: list[int] = field(default_factory=list)


def requeue(
    session: Session,
    build_id: int,
    attempt: int,
    *,
    settings: Settings,
    note: str,
    lease_retry: bool,
) -> bool:
    """Moves running attempt `attempt` back to queued as attempt `attempt + 1` and enqueues it.
    Returns False if the build was no longer running that attempt."""
    values: dict[str, Any] = {
        "queued_at": utcnow(),
        "started_at": None,
        "heartbeat_at": None,
        "lease_expires_at": None,
        "build_host": None,
        "error": None,
    }
    if lease_retry:
        values["lease_retries"] = Build.lease_retries + 1
    if not transition(
        session,
        build_id,
        BuildStatus.QUEUED,
        expected=RUNNING,
        attempt=attempt,
        next_attempt=attempt + 1,
        **values,
    ):
        return False
    logs.append(session, build_id, attempt, f"==> {note}; queued again as attempt {attempt + 1}\n")
    enqueue(session, BUILD_TASK, [build_id], queue=settings.build_queue)
    return True


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
            if requeue(
                session,
                row.id,
                row.attempt,
                settings=settings,
                note=lost,
                lease_retry=True,
            ):
                result.requeued.append(row.id)
            continue
        error = f"{lost} (retried {row.lease_retries} times)"
        if transition(
            session,
            row.id,
            BuildStatus.ERRORED,
            expected=RUNNING,
            attempt=row.attempt,
            error=error,
            finished_at=now,
            lease_expires_at=None,
        ):
            logs.append(session, row.id, row.attempt, f"==> errored: {error}\n")
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
    return requeue(session, build_id, attempt, settings=settings, note=note, lease_retry=False)
