"""Queued builds whose job the broker no longer holds are dispatched again.

The outbox guarantees that a build's job reaches the broker once; it cannot know that the broker
kept it. A Redis restart (Redis as `script/lib.sh` runs it keeps nothing on disk; managed Redis
services fail over alike) empties the queues, and the builds whose jobs were waiting would stay
`queued` for good. So every `redispatch_interval_seconds` the jobs of builds queued for longer
than `queued_job_timeout_seconds` are looked for in the broker, and each one missing is sent
again through the outbox. A duplicate is harmless (the claim is a conditional update) and rare:
a build whose job waits in the broker is left alone, so a backlog behind busy workers is not
sent again; where the broker cannot be read, or its job keeps going missing, a build is sent
again after the timeout, then twice as long, and so on.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK, jobs_waiting
from app.builds import lifecycle
from app.config import Settings
from app.models import Build, BuildStatus, OutboxMessage
from app.models.base import utcnow

log = logging.getLogger(__name__)

MAX_BACKOFF_STEPS = 6  # the wait between two re-sends of one build stops growing at 64 timeouts


def waiting_since(build: Build) -> datetime:
    """Since when the build's current job has been on its way."""
    return build.redispatched_at or build.queued_at


def is_overdue(build: Build, settings: Settings, now: datetime) -> bool:
    """Whether a queued build has waited long enough for its job to be sent again."""
    timeout = settings.queued_job_timeout_seconds * 2 ** min(build.redispatches, MAX_BACKOFF_STEPS)
    return waiting_since(build) <= now - timedelta(seconds=timeout)


def redispatch_lost(
    session: Session, settings: Settings, *, now: datetime | None = None, limit: int = 1000
) -> list[int]:
    """Sends again the jobs of overdue queued builds that the broker does not hold. Returns their
    ids. The caller commits."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.queued_job_timeout_seconds)
    overdue = [
        build
        for build in session.scalars(
            select(Build)
            .where(
                Build.status == BuildStatus.QUEUED,
                func.coalesce(Build.redispatched_at, Build.queued_at) <= cutoff,
            )
            .order_by(Build.id)
            .limit(limit)
        )
        if is_overdue(build, settings, now)
    ]
    if not overdue:
        return []
    unsent = _jobs_in_outbox(session)
    try:
        waiting = jobs_waiting(settings, BUILD_TASK, settings.build_queue)
    except Exception as exc:  # the broker is down: the outbox holds what is sent meanwhile
        log.warning("redispatch skipped: the broker cannot be read: %s", exc)
        return []
    sent = []
    for build in overdue:
        if build.id in unsent or (waiting is not None and build.id in waiting):
            continue
        if lifecycle.redispatch(session, build.id, attempt=build.attempt, at=now):
            sent.append(build.id)
    if sent:
        log.warning("dispatched again the lost jobs of queued builds %s", sent)
    return sent


def _jobs_in_outbox(session: Session) -> set[int]:
    """Builds whose job is still in the outbox, not yet sent: the relay will send it."""
    rows = session.scalars(
        select(OutboxMessage.args).where(
            OutboxMessage.task_name == BUILD_TASK, OutboxMessage.dispatched_at.is_(None)
        )
    )
    return {int(args[0]) for args in rows if args}
