"""A pass of the reconciler over every repository, then over the App's failed deliveries.

Requests go to GitHub one at a time, as GitHub asks of integrations. A pass stops early when
GitHub says to wait (403/429 with Retry-After or X-RateLimit-Reset), or when fewer requests than
the reserve remain in the credential's budget; it records until when, and the next pass does not
start before. Repositories are taken least recently reconciled first, so a pass cut short goes on
next time where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.config import Settings
from app.github.auth import AppInstallationAuth
from app.github.client import GitHubClient
from app.github.errors import RateLimited
from app.models import ReconcilerRun
from app.models.base import utcnow
from app.reconcile import queries
from app.reconcile.deliveries import redeliver_failed
from app.reconcile.service import Known, read_known, reconcile_repository
from app.statuses.queries import rate_limit_pause

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
# Repositories GitHub answered 304 are marked together, this many per statement.
UNCHANGED_BATCH = 500
# What Cartridge knows of repositories is read this many at a time.
READ_BATCH = 200
# The delivery listing of a pass reaches back a little before the previous pass began.
DELIVERY_WINDOW_OVERLAP = timedelta(minutes=10)


@dataclass
class PassResult:
    run_id: int | None = None
    skipped: str | None = None
    repositories: int = 0
    requests: int = 0
    not_modified: int = 0
    recovered_pushes: int = 0
    redeliveries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rate_limited_until: datetime | None = None
    seconds: float = 0.0


def run_pass(sessions: SessionFactory, client: GitHubClient, settings: Settings) -> PassResult:
    started = time.perf_counter()
    result = PassResult()
    with sessions() as session, session.begin():
        now = utcnow()
        pause = queries.rate_limited_until(session, now) or rate_limit_pause(session, now)
        if pause is not None:
            result.skipped = f"GitHub asked to wait until {pause.isoformat()}"
            return result
        run = queries.start_run(session, settings.reconcile_run_lease_seconds)
        if run is None:
            result.skipped = "another pass is running"
            return result
        result.run_id = run.id
        previous = queries.last_finished_run(session)
        since = previous.started_at - DELIVERY_WINDOW_OVERLAP if previous else None
        repository_ids = queries.repository_ids_by_staleness(session)
    sent, not_modified = client.requests.sent, client.requests.not_modified
    error: str | None = None
    try:
        result.rate_limited_until = _reconcile_all(
            sessions, client, settings, repository_ids, result
        )
        if result.rate_limited_until is None and isinstance(client.auth, AppInstallationAuth):
            window_start = since or utcnow() - timedelta(days=settings.reconcile_deliveries_days)
            try:
                redelivered = redeliver_failed(sessions, client, settings, since=window_start)
            except RateLimited as exc:
                result.rate_limited_until = datetime.fromtimestamp(exc.retry_at, UTC)
            else:
                result.redeliveries = len(redelivered.requested)
                error = redelivered.error
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        result.requests = client.requests.sent - sent
        result.not_modified = client.requests.not_modified - not_modified
        result.seconds = time.perf_counter() - started
        with sessions() as session, session.begin():
            _finish(session, result, error)
    log.info(
        "reconciler pass %s: %d repositories, %d requests (%d not modified), %d recovered, "
        "%d redelivered in %.1fs",
        result.run_id,
        result.repositories,
        result.requests,
        result.not_modified,
        result.recovered_pushes,
        result.redeliveries,
        result.seconds,
    )
    return result


def _reconcile_all(
    sessions: SessionFactory,
    client: GitHubClient,
    settings: Settings,
    repository_ids: list[int],
    result: PassResult,
) -> datetime | None:
    """Reconciles the repositories in order; returns until when GitHub asked to wait, if it did."""
    unchanged: list[int] = []
    known: dict[int, Known] = {}
    try:
        for index, repository_id in enumerate(repository_ids):
            low = _budget_exhausted(client, settings)
            if low is not None:
                log.warning("reconciler stops: the GitHub rate budget is down to its reserve")
                return low
            if repository_id not in known:
                known = read_known(sessions, repository_ids[index : index + READ_BATCH])
            if repository_id not in known:  # deleted since the pass began
                continue
            try:
                outcome = reconcile_repository(
                    sessions, client, repository_id, known=known[repository_id], unchanged=unchanged
                )
            except RateLimited as exc:
                result.repositories += 1
                result.outcomes["rate_limited"] += 1
                return datetime.fromtimestamp(exc.retry_at, UTC)
            except LookupError:  # deleted since the pass began
                continue
            result.repositories += 1
            result.outcomes[outcome.outcome.value] += 1
            result.recovered_pushes += len(outcome.recovered)
            if len(unchanged) >= UNCHANGED_BATCH:
                _mark_unchanged(sessions, unchanged)
    finally:
        _mark_unchanged(sessions, unchanged)
    return None


def _mark_unchanged(sessions: SessionFactory, unchanged: list[int]) -> None:
    if unchanged:
        with sessions() as session, session.begin():
            queries.mark_unchanged(session, unchanged, utcnow())
        unchanged.clear()


def _budget_exhausted(client: GitHubClient, settings: Settings) -> datetime | None:
    budget = client.budget
    if budget.remaining is None or budget.reset_at is None:
        return None
    if budget.remaining >= settings.reconcile_rate_limit_reserve or budget.reset_at <= time.time():
        return None
    return datetime.fromtimestamp(budget.reset_at, UTC)


def _finish(session: Session, result: PassResult, error: str | None) -> None:
    run = session.get(ReconcilerRun, result.run_id)
    if run is None:
        return
    run.finished_at = utcnow()
    run.running = None
    run.repositories = result.repositories
    run.requests = result.requests
    run.recovered_pushes = result.recovered_pushes
    run.redeliveries = result.redeliveries
    run.rate_limited_until = result.rate_limited_until
    run.error = error[:2000] if error else None
