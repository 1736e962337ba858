"""Sending commit statuses to GitHub, and the periodic re-drive of sends that are due."""

from __future__ import annotations

import logging

from app.broker import get_celery
from app.db import session_scope
from app.statuses.sending import redrive, send_newest
from app.statuses.service import SEND_TASK

REDRIVE_TASK = "cartridge.statuses.redrive"

celery_app = get_celery()
log = logging.getLogger(__name__)


@celery_app.task(name=SEND_TASK, ignore_result=True)
def send_statuses(build_id: int) -> str:
    """Sends the build's newest unsent status. Retries are scheduled through the outbox
    (with a countdown) in the same transaction that records the failed try."""
    with session_scope() as session:
        outcome = send_newest(session, build_id)
    log.info("status send for build %s: %s", build_id, outcome)
    return outcome.value


@celery_app.task(name=REDRIVE_TASK, ignore_result=True)
def redrive_statuses() -> int:
    with session_scope() as session:
        return redrive(session)
