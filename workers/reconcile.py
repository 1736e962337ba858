"""The reconciler's periodic pass. `celery beat` sends the schedule task every
`CARTRIDGE_RECONCILE_INTERVAL_SECONDS`; it queues the pass itself up to
`CARTRIDGE_RECONCILE_JITTER_SECONDS` later, through the outbox."""

from __future__ import annotations

import logging
import random
from typing import Any

from app.broker import get_celery
from app.config import get_settings
from app.db import get_session_factory, session_scope
from app.github.client import get_github_client
from app.github.errors import GitHubError
from app.outbox.service import enqueue
from app.reconcile.runs import run_pass

SCHEDULE_TASK = "cartridge.reconcile.schedule"
RECONCILE_TASK = "cartridge.reconcile.run"

celery_app = get_celery()
log = logging.getLogger(__name__)


@celery_app.task(name=SCHEDULE_TASK, ignore_result=True)
def schedule_pass() -> float:
    settings = get_settings()
    countdown = random.uniform(0, settings.reconcile_jitter_seconds)
    with session_scope() as session:
        enqueue(
            session, RECONCILE_TASK, [], queue=settings.default_queue, countdown=round(countdown)
        )
    return countdown


@celery_app.task(name=RECONCILE_TASK, ignore_result=True)
def reconcile() -> dict[str, Any]:
    """One pass over every repository; a no-op while another pass runs."""
    settings = get_settings()
    try:
        client = get_github_client()
    except GitHubError as exc:  # no credentials configured
        log.info("reconciler idle: %s", exc.reason)
        return {"skipped": exc.reason}
    result = run_pass(get_session_factory(), client, settings)
    return {
        "run": result.run_id,
        "skipped": result.skipped,
        "repositories": result.repositories,
        "requests": result.requests,
        "recovered_pushes": result.recovered_pushes,
        "redeliveries": result.redeliveries,
    }
