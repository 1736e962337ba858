"""Turning a branch push into a queued build, and cancelling the builds it supersedes.

A SHA is built once per repository: pushes of the same SHA (another branch, a redelivery, a
concurrent push) share one build row, created with INSERT .. ON CONFLICT DO NOTHING so that
concurrent inserts never fail. A build that is created, or a cancelled one pushed again, is
enqueued through the outbox in the caller's transaction. Failed and errored builds are rebuilt only
by an explicit retry, never by a push.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from typing import Any, TypedDict

from sqlalchemy import Table, bindparam, exists, insert, select, update
from sqlalchemy.orm import Session, aliased

from app.broker import BUILD_TASK
from app.builds.transitions import forget_loaded, sources_of, transition
from app.config import get_settings
from app.engine import dialect_insert
from app.models import Build, BuildStatus, Push, PushDecision, Repository
from app.models.base import utcnow
from app.models.build import is_active
from app.outbox.service import enqueue
from app.statuses.service import record_status

SHORT_SHA_LENGTH = 7


class BuildAction(enum.StrEnum):
    CREATED = "created"
    REQUEUED = "requeued"  # a cancelled build pushed again: a new attempt
    EXISTING = "existing"  # the push shares a build that already exists


class PushValues(TypedDict):
    """The columns of a `pushes` row, but its build."""

    repository_id: int
    webhook_delivery_id: int | None
    ref: str
    branch: str | None
    tag: str | None
    before_sha: str
    after_sha: str
    forced: bool
    created: bool
    deleted: bool
    pusher: str | None
    head_commit_message: str | None
    decision: PushDecision


@dataclass(frozen=True)
class QueuedPush:
    push_id: int
    build_id: int
    status: str
    attempt: int
    action: BuildAction
    superseded_build_ids: list[int] = field(default_factory=list)


# Statements are built once: building SQLAlchemy expressions costs more than running them.
@cache
def _insert_build(dialect: str) -> Any:
    return (
        dialect_insert(dialect, Build)
        .values(repository_id=bindparam("repository_id"), sha=bindparam("sha"))
        .on_conflict_do_nothing(index_elements=["repository_id", "sha"])
        .returning(Build.id, Build.status, Build.attempt)
    )


_INSERT_PUSH = insert(Push).returning(Push.id)
_SELECT_BUILD = select(Build.id, Build.status, Build.attempt).where(
    Build.repository_id == bindparam("repository_id"), Build.sha == bindparam("sha")
)


def matches_any(name: str, patterns: list[str]) -> bool:
    """Case-sensitive fnmatch, like git ref names; `*` also matches `/`."""
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def branch_is_built(repository: Repository, branch: str) -> bool:
    filters = repository.branch_filters or []
    return not filters or matches_any(branch, filters)


def record_push(session: Session, push: PushValues, build_id: int | None = None) -> int:
    """Inserts a push row and returns its id. A Core INSERT: nothing in the session needs the
    row as an object, so the unit of work would only add cost."""
    push_id: int = (
        session.connection().execute(_INSERT_PUSH, {**push, "build_id": build_id}).scalar_one()
    )
    return push_id


def queue_push(session: Session, repository: Repository, push: PushValues) -> QueuedPush:
    """Records `push` with the build of its SHA, creating or re-queueing that build when needed,
    then cancels the branch's builds it supersedes."""
    build_id, status, attempt, action = _find_or_create_build(
        session, repository.id, push["after_sha"]
    )
    push_id = record_push(session, push, build_id)
    superseded: list[int] = []
    branch = push["branch"]
    if branch is not None and _supersedes(repository, branch):
        superseded = cancel_superseded_builds(
            session,
            repository.id,
            branch=branch,
            push_id=push_id,
            sha=push["after_sha"],
            keep_build_id=build_id,
        )
    return QueuedPush(push_id, build_id, status, attempt, action, superseded)


def _find_or_create_build(
    session: Session, repository_id: int, sha: str
) -> tuple[int, str, int, BuildAction]:
    params = {"repository_id": repository_id, "sha": sha}
    dialect = session.get_bind().dialect.name
    created = session.connection().execute(_insert_build(dialect), params).first()
    if created is not None:
        _enqueue_build(session, created.id)
        record_status(session, created.id)
        return created.id, created.status, created.attempt, BuildAction.CREATED
    existing = session.connection().execute(_SELECT_BUILD, params).one()
    if existing.status == BuildStatus.CANCELLED and start_new_attempt(
        session, existing.id, attempt=existing.attempt, expected={BuildStatus.CANCELLED}
    ):
        _enqueue_build(session, existing.id)
        return existing.id, BuildStatus.QUEUED.value, existing.attempt + 1, BuildAction.REQUEUED
    return existing.id, existing.status, existing.attempt, BuildAction.EXISTING


def start_new_attempt(
    session: Session, build_id: int, *, attempt: int, expected: Iterable[BuildStatus]
) -> bool:
    """Moves a finished build back to queued as attempt `attempt + 1`, if it is still in one of
    `expected` on `attempt`. The caller enqueues the build job."""
    return transition(
        session,
        build_id,
        BuildStatus.QUEUED,
        expected=expected,
        attempt=attempt,
        queued_at=utcnow(),
        started_at=None,
        finished_at=None,
        heartbeat_at=None,
        lease_expires_at=None,
        lease_retries=0,
        build_host=None,
        error=None,
        cancel_reason=None,
        superseded_by_push_id=None,
        next_attempt=attempt + 1,
    )


def _enqueue_build(session: Session, build_id: int) -> None:
    enqueue(session, BUILD_TASK, [build_id], queue=get_settings().build_queue)


def _supersedes(repository: Repository, branch: str) -> bool:
    if not repository.cancel_superseded:
        return False
    return not matches_any(branch, repository.effective_protected_branches())


def cancel_superseded_builds(
    session: Session, repository_id: int, *, branch: str, push_id: int, sha: str, keep_build_id: int
) -> list[int]:
    """Cancels the queued or running builds of `branch` pushed before push `push_id` (of `sha`),
    except the build that push points at and builds that are still the head of another branch or
    a tag's build. Returns the ids it cancelled, oldest first.

    One conditional UPDATE finds and cancels them: it runs on every branch push. Like every
    transition, it moves only builds still in a status a cancel may leave, re-checked row by row
    against concurrent changes."""
    params = {
        "of_repository": repository_id,
        "branch": branch,
        "before_push_id": push_id,
        "keep_build_id": keep_build_id,
        "reason": f"Superseded by {sha[:SHORT_SHA_LENGTH]}",
        "now": utcnow(),
    }
    cancelled = sorted(session.connection().execute(_CANCEL_SUPERSEDED, params).scalars())
    for build_id in cancelled:
        forget_loaded(session, build_id)
        record_status(session, build_id)
    return cancelled


def _superseded_candidates_query() -> Any:
    pushed_here = aliased(Push, name="pushed_here")
    elsewhere = aliased(Push, name="elsewhere")
    newer = aliased(Push, name="newer")
    repository_id: Any = bindparam("of_repository")
    branch: Any = bindparam("branch")
    # A build's pushes all belong to its repository, so the subqueries below key on build_id
    # alone: with repository_id beside it the planner may walk all the repository's pushes
    # per candidate when its statistics are young, as they are on a new installation.
    was_pushed_to_branch = (
        exists()
        .where(
            pushed_here.build_id == Build.id,
            pushed_here.branch == branch,
            pushed_here.id < bindparam("before_push_id"),
        )
        .correlate(Build)
    )
    # The head of a branch is its latest push (a deletion included, which ends its claim).
    newer_on_that_branch = exists().where(
        newer.repository_id == elsewhere.repository_id,
        newer.branch == elsewhere.branch,
        newer.id > elsewhere.id,
    )
    still_wanted_elsewhere = (
        exists()
        .where(
            elsewhere.build_id == Build.id,
            (elsewhere.tag.is_not(None)) | ((elsewhere.branch != branch) & ~newer_on_that_branch),
        )
        .correlate(Build)
    )
    return select(Build.id).where(
        Build.repository_id == repository_id,
        is_active(),
        was_pushed_to_branch,
        ~still_wanted_elsewhere,
    )


def _cancel_superseded_statement() -> Any:
    builds: Table = Build.__table__  # type: ignore[assignment]
    leavable = sorted(status.value for status in sources_of(BuildStatus.CANCELLED))
    candidates = _superseded_candidates_query().where(Build.id != bindparam("keep_build_id"))
    return (
        update(builds)
        .where(builds.c.id.in_(candidates.scalar_subquery()), builds.c.status.in_(leavable))
        .values(
            status=BuildStatus.CANCELLED.value,
            cancel_reason=bindparam("reason", type_=builds.c.cancel_reason.type),
            superseded_by_push_id=bindparam("before_push_id", type_=builds.c.id.type),
            finished_at=bindparam("now", type_=builds.c.finished_at.type),
        )
        .returning(builds.c.id)
    )


_CANCEL_SUPERSEDED = _cancel_superseded_statement()
