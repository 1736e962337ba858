"""Queries behind the reconciler."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from app.engine import insert_for
from app.models import (
    Build,
    HookRedelivery,
    ReconcileOutcome,
    ReconcilerRun,
    Repository,
    RepositoryReconciliation,
    WebhookDelivery,
)
from app.models.base import utcnow


def repository_ids_by_staleness(session: Session) -> list[int]:
    """Every repository, the never reconciled first, then the longest unreconciled: a pass cut
    short by a rate limit goes on next time where it stopped."""
    query = (
        select(Repository.id)
        .outerjoin(
            RepositoryReconciliation, RepositoryReconciliation.repository_id == Repository.id
        )
        .order_by(
            RepositoryReconciliation.reconciled_at.is_not(None),
            RepositoryReconciliation.reconciled_at,
            Repository.id,
        )
    )
    return list(session.scalars(query))


def full_names(session: Session, repository_ids: list[int]) -> dict[int, str]:
    if not repository_ids:
        return {}
    query = select(Repository.id, Repository.full_name).where(Repository.id.in_(repository_ids))
    return {row.id: row.full_name for row in session.execute(query)}


def reconciliation_of(session: Session, repository_id: int) -> RepositoryReconciliation | None:
    return session.get(RepositoryReconciliation, repository_id)


def reconciliations_of(
    session: Session, repository_ids: Iterable[int]
) -> dict[int, RepositoryReconciliation]:
    ids = list(repository_ids)
    if not ids:
        return {}
    rows = session.scalars(
        select(RepositoryReconciliation).where(RepositoryReconciliation.repository_id.in_(ids))
    )
    return {row.repository_id: row for row in rows}


def save_reconciliation(
    session: Session,
    repository_id: int,
    *,
    outcome: ReconcileOutcome,
    summary: dict[str, Any],
    listing: list[dict[str, Any]] | None,
    at: datetime,
) -> None:
    """Records the pass over one repository; `listing` None keeps the stored listing."""
    row = session.get(RepositoryReconciliation, repository_id)
    if row is None:
        row = RepositoryReconciliation(repository_id=repository_id, listing=listing or [])
        session.add(row)
    elif listing is not None:
        row.listing = listing
    row.reconciled_at = at
    row.outcome = outcome
    row.summary = summary
    session.flush()


def mark_unchanged(session: Session, repository_ids: list[int], at: datetime) -> None:
    """One UPDATE for every repository whose listing GitHub answered 304: only the time and
    outcome of the check change."""
    if not repository_ids:
        return
    session.execute(
        update(RepositoryReconciliation)
        .where(RepositoryReconciliation.repository_id.in_(repository_ids))
        .values(
            reconciled_at=at,
            outcome=ReconcileOutcome.UNCHANGED,
            summary={"requests": "not modified"},
        )
        .execution_options(synchronize_session=False)
    )


def has_build(session: Session, repository_id: int, sha: str) -> bool:
    query = select(exists().where(Build.repository_id == repository_id, Build.sha == sha))
    return bool(session.scalar(query))


# Passes of the reconciler.


def start_run(session: Session, lease_seconds: float) -> ReconcilerRun | None:
    """Starts a pass, or returns None while another one runs. A pass older than the lease is
    taken as dead and closed first."""
    now = utcnow()
    session.execute(
        update(ReconcilerRun)
        .where(
            ReconcilerRun.running.is_(True),
            ReconcilerRun.started_at < now - timedelta(seconds=lease_seconds),
        )
        .values(running=None, finished_at=now, error="abandoned: the pass did not finish")
    )
    inserted = session.execute(
        insert_for(session, ReconcilerRun)
        .values(
            started_at=now,
            running=True,
            repositories=0,
            requests=0,
            recovered_pushes=0,
            redeliveries=0,
        )
        .on_conflict_do_nothing()
        .returning(ReconcilerRun.id)
    ).scalar_one_or_none()
    if inserted is None:
        return None
    return session.get(ReconcilerRun, inserted)


def last_finished_run(session: Session) -> ReconcilerRun | None:
    query = (
        select(ReconcilerRun)
        .where(ReconcilerRun.finished_at.is_not(None))
        .order_by(ReconcilerRun.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def rate_limited_until(session: Session, now: datetime) -> datetime | None:
    """Until when the last pass was told to wait, if that is still ahead."""
    until = session.scalar(select(func.max(ReconcilerRun.rate_limited_until)))
    return until if until is not None and until > now else None


def recorded_guids(session: Session, guids: list[str]) -> set[str]:
    if not guids:
        return set()
    query = select(WebhookDelivery.guid).where(WebhookDelivery.guid.in_(guids))
    return set(session.scalars(query))


def redeliveries_of(session: Session, guids: list[str]) -> dict[str, HookRedelivery]:
    if not guids:
        return {}
    query = select(HookRedelivery).where(HookRedelivery.guid.in_(guids))
    return {row.guid: row for row in session.scalars(query)}
