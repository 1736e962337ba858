"""Recording the commit statuses a build owes GitHub, in the transaction that changed the build."""

from __future__ import annotations

import math

from sqlalchemy.orm import Session

from app.config import get_settings
from app.github.describe import describe
from app.models import Build, StatusPost
from app.outbox.service import enqueue

DELIVER_TASK = "cartridge.statuses.deliver"


def target_url(build_id: int) -> str:
    return f"{get_settings().public_url.rstrip('/')}/api/v1/builds/{build_id}"


def record_status(session: Session, build: Build) -> StatusPost | None:
    """Records the status GitHub should show for the build's current state and enqueues its
    delivery. Call it after every change of the build's status, in the same transaction.

    Returns None when no GitHub credentials are configured (nothing could deliver it)."""
    settings = get_settings()
    if not settings.github_statuses_enabled:
        return None
    state, description = describe(session, build)
    post = StatusPost(
        build_id=build.id,
        attempt=build.attempt,
        state=state,
        context=settings.github_status_context,
        description=description,
        target_url=target_url(build.id),
    )
    session.add(post)
    session.flush()
    enqueue_delivery(session, build.id)
    return post


def enqueue_delivery(session: Session, build_id: int, *, countdown: float = 0) -> None:
    """Delivery runs per build (the newest undelivered post wins), so the task takes the build."""
    enqueue(
        session,
        DELIVER_TASK,
        [build_id],
        queue=get_settings().default_queue,
        countdown=max(0, math.ceil(countdown)),
    )
