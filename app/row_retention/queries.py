"""What the retention policy may delete, as queries: each returns the ids of one small batch.

Every batch query walks an index in id order from where the previous batch stopped (`after`),
and locks what it returns with SKIP LOCKED on PostgreSQL: a prune never waits for a row someone
else holds, and the rows it locks are old ones nobody else touches.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.models import (
    Build,
    BuildLogChunk,
    BuildStatus,
    OutboxMessage,
    Push,
    StatusPost,
    WebhookDelivery,
)
from app.models.status_post import SendState

FINAL = [status.value for status in BuildStatus if status.is_final]
DONE_POSTS = [SendState.SENT.value, SendState.SKIPPED.value]


def _batch(session: Session, query: Select, limit: int, lock: bool) -> list[int]:
    query = query.limit(limit)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def old_deliveries(
    session: Session, cutoff: datetime, after: int, limit: int, *, lock: bool = True
) -> list[int]:
    # Ids grow with arrival, so walking the primary key from the oldest finds them first.
    query = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.id > after, WebhookDelivery.received_at < cutoff)
        .order_by(WebhookDelivery.id)
    )
    return _batch(session, query, limit, lock)


def dispatched_outbox(
    session: Session, cutoff: datetime, after: int, limit: int, *, lock: bool = True
) -> list[int]:
    # Only rows the relay is done with: never one still waiting for the broker.
    query = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.id > after,
            OutboxMessage.dispatched_at.is_not(None),
            OutboxMessage.dispatched_at < cutoff,
        )
        .order_by(OutboxMessage.id)
    )
    return _batch(session, query, limit, lock)


def sent_status_posts(
    session: Session, cutoff: datetime, after: int, limit: int, *, lock: bool = True
) -> list[int]:
    """Sent or skipped posts, except each build's newest sent one: the sender compares a new
    status with it (never repeat, never regress)."""
    newer = aliased(StatusPost)
    query = (
        select(StatusPost.id)
        .where(
            StatusPost.id > after,
            StatusPost.created_at < cutoff,
            StatusPost.send_state.in_(DONE_POSTS),
            exists().where(
                newer.build_id == StatusPost.build_id,
                newer.send_state == SendState.SENT.value,
                newer.id > StatusPost.id,
            ),
        )
        .order_by(StatusPost.id)
    )
    return _batch(session, query, limit, lock)


def _kept_builds(builds_per_branch: int) -> Select:
    """Builds whose logs stay whatever their age: each branch's (or tag's) latest green, and its
    last `builds_per_branch` builds."""
    ranked = (
        select(
            Push.build_id.label("build_id"),
            func.row_number()
            .over(partition_by=(Push.repository_id, Push.ref), order_by=Push.id.desc())
            .label("recent"),
            func.row_number()
            .over(
                partition_by=(Push.repository_id, Push.ref, Build.status == "succeeded"),
                order_by=Push.id.desc(),
            )
            .label("green_rank"),
            Build.status.label("status"),
        )
        .join(Build, Build.id == Push.build_id)
        .subquery()
    )
    keep: ColumnElement[bool] = and_(ranked.c.status == "succeeded", ranked.c.green_rank == 1)
    if builds_per_branch > 0:
        keep = or_(keep, ranked.c.recent <= builds_per_branch)
    return select(ranked.c.build_id).where(keep)


def builds_with_prunable_logs(
    session: Session,
    *,
    finished_before: datetime | None,
    builds_per_branch: int,
    after: int,
    limit: int,
) -> list[tuple[int, int]]:
    """(build id, attempt) of final builds with a stored log that the policy lets go: finished
    before `finished_before`, or beyond the last `builds_per_branch` builds of every branch
    they are on; never a branch's latest green."""
    reasons = []
    if finished_before is not None:
        reasons.append(Build.finished_at < finished_before)
    if builds_per_branch > 0:
        reasons.append(Build.id.not_in(_kept_builds(builds_per_branch)))
    if not reasons:
        return []
    has_log = exists().where(BuildLogChunk.build_id == Build.id)
    query = (
        select(Build.id, Build.attempt)
        .where(
            Build.id > after,
            Build.status.in_(FINAL),
            has_log,
            or_(*reasons),
            Build.id.not_in(_kept_builds(0)),
        )
        .order_by(Build.id)
        .limit(limit)
    )
    return [(int(build_id), int(attempt)) for build_id, attempt in session.execute(query)]


def log_chunks_of(
    session: Session,
    build_id: int,
    attempt: int,
    pushes_up_to: int,
    after: int,
    limit: int,
    *,
    lock: bool = True,
) -> list[int]:
    """A batch of chunks of the build's attempts up to `attempt` (a retry started since writes
    a later one, kept), unless a push newer than `pushes_up_to` points at the build (a branch
    that now uses it may make it its latest green)."""
    repushed = exists().where(Push.build_id == build_id, Push.id > pushes_up_to)
    query = (
        select(BuildLogChunk.id)
        .where(
            and_(BuildLogChunk.build_id == build_id, BuildLogChunk.attempt <= attempt),
            BuildLogChunk.id > after,
            ~repushed,
        )
        .order_by(BuildLogChunk.id)
    )
    return _batch(session, query, limit, lock)


def newest_push_id(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(Push.id), 0))) or 0)
