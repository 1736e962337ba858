"""Queries on status posts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import StatusPost
from app.models.status_post import SendState

RATE_LIMIT_CODES = (403, 429)


def lock_queued_posts(session: Session, build_id: int) -> list[StatusPost]:
    """The build's unsent posts, oldest first, locked until the transaction ends.

    A second send of the same build waits here; once the first commits, the rows it
    sent or skipped no longer match, so the two can never send out of order."""
    query = (
        select(StatusPost)
        .where(StatusPost.build_id == build_id, StatusPost.send_state == SendState.QUEUED)
        .order_by(StatusPost.id)
        .with_for_update()
    )
    return list(session.scalars(query))


def last_sent(session: Session, build_id: int) -> StatusPost | None:
    query = (
        select(StatusPost)
        .where(StatusPost.build_id == build_id, StatusPost.send_state == SendState.SENT)
        .order_by(StatusPost.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def rate_limit_pause(session: Session, now: datetime) -> datetime | None:
    """Until when GitHub asked us to stop: the rate limit is per credential, not per build."""
    query = select(func.max(StatusPost.next_try_at)).where(
        StatusPost.send_state == SendState.QUEUED,
        StatusPost.response_code.in_(RATE_LIMIT_CODES),
        StatusPost.next_try_at > now,
    )
    return session.scalar(query)


def due_build_ids(session: Session, before: datetime, limit: int = 1000) -> list[int]:
    """Builds with an unsent post whose retry (or first try) should have happened by now."""
    due_at = func.coalesce(StatusPost.next_try_at, StatusPost.created_at)
    query = (
        select(StatusPost.build_id)
        .where(StatusPost.send_state == SendState.QUEUED, due_at <= before)
        .group_by(StatusPost.build_id)
        .order_by(StatusPost.build_id)
        .limit(limit)
    )
    return list(session.scalars(query))


def posts_for_build(session: Session, build_id: int) -> list[StatusPost]:
    query = select(StatusPost).where(StatusPost.build_id == build_id).order_by(StatusPost.id)
    return list(session.scalars(query))
