"""Turning a branch push into a queued build, and cancelling the builds it supersedes.

A SHA is built once per repository: pushes of the same SHA (another branch, a redelivery, a
concurrent push) share one build row, created with INSERT .. ON CONFLICT DO NOTHING so that
concurrent inserts never fail. A build that is created, or a cancelled one pushed again, is
enqueued through the outbox in the caller's transaction. Failed and errored builds are rebuilt only
by an explicit retry, never by a push.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, TypedDict

from sqlalchemy import bindparam, exists, insert, select
from sqlalchemy.orm import Session, aliased

from app.builds import heads, lifecycle
from app.builds.lifecycle import BuildAction
from app.models import (
    Build,
    KnownBranchHead,
    Push,
    PushDecision,
    PushSource,
    Repository,
)
from app.models.build import is_active


class PushValues(TypedDict):
    """The columns of a `pushes` row, but its build and its place in the branch's history."""

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
    source: PushSource
    pushed_at: datetime | None


@dataclass(frozen=True)
class QueuedPush:
    push_id: int
    build_id: int | None  # None: older than the branch's head, not built for it
    status: str | None
    attempt: int | None
    action: BuildAction | None
    superseded_build_ids: list[int] = field(default_factory=list)
    decision: PushDecision = PushDecision.BUILT


@dataclass(frozen=True)
class RecordedPush:
    push_id: int
    placement: heads.Placement | None  # None: not a branch push
    head_push_id: int | None


# Statements are built once: building SQLAlchemy expressions costs more than running them.
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


def place_push(session: Session, push: PushValues) -> heads.Placement | None:
    """The push's place in its branch's history (`app.builds.heads`), which locks the branch's
    head until the transaction ends; None for a tag or another ref."""
    branch = push["branch"]
    if branch is None:
        return None
    return heads.place(
        session,
        push["repository_id"],
        branch,
        before=push["before_sha"],
        after=push["after_sha"],
        pushed_at=push["pushed_at"],
    )


def record_push(
    session: Session,
    push: PushValues,
    build_id: int | None = None,
    *,
    placement: heads.Placement | None = None,
) -> RecordedPush:
    """Inserts a push row in its branch's history and moves the branch's head as its place says
    (placing it first unless `placement` is given). A Core INSERT: nothing in the session needs
    the row as an object, so the unit of work would only add cost."""
    if placement is None:
        placement = place_push(session, push)
    values: dict[str, Any] = {**push, "build_id": build_id, "position": None, "linked": True}
    if placement is not None:
        values.update(position=placement.position, linked=placement.linked)
    push_id: int = session.connection().execute(_INSERT_PUSH, values).scalar_one()
    head_push_id = None
    if placement is not None and push["branch"] is not None:
        head_push_id = heads.settle(
            session, push["repository_id"], push["branch"], push_id, placement
        )
    return RecordedPush(push_id, placement, head_push_id)


def queue_push(session: Session, repository: Repository, push: PushValues) -> QueuedPush:
    """Records `push` with the build of its SHA, creating or re-queueing that build when needed,
    then cancels the branch's builds the branch's new head supersedes.

    A push older than the branch's head (it arrived late) is history: on a branch whose
    superseded builds are cancelled it gets its SHA's build only if one exists, and cancels
    nothing; elsewhere its SHA is built, but a cancelled build is not queued again for it."""
    placement = place_push(session, push)
    branch = push["branch"]
    supersedes = branch is not None and _supersedes(repository, branch)
    moved = placement is None or placement.moved_head
    # The chain may run past this push at once, to pushes that arrived before it.
    is_head = placement is None or (placement.moved_head and not placement.walked)
    if supersedes and not is_head:
        found = _existing_build(session, repository.id, push["after_sha"])
        if found is None:
            stale = {**push, "decision": PushDecision.SUPERSEDED}
            recorded = record_push(session, stale, placement=placement)  # type: ignore[arg-type]
            superseded = _settle_head(session, repository.id, branch, placement, recorded)
            return QueuedPush(
                recorded.push_id,
                None,
                None,
                None,
                None,
                superseded,
                decision=PushDecision.SUPERSEDED,
            )
        build_id, status, attempt, action = found
    else:
        build_id, status, attempt, action = _find_or_create_build(
            session, repository.id, push["after_sha"], requeue=moved
        )
    recorded = record_push(session, push, build_id, placement=placement)
    superseded = _settle_head(session, repository.id, branch, placement, recorded)
    return QueuedPush(recorded.push_id, build_id, status, attempt, action, superseded)


def _settle_head(
    session: Session,
    repository_id: int,
    branch: str | None,
    placement: heads.Placement | None,
    recorded: RecordedPush,
) -> list[int]:
    """When the push moved the branch's head: the head's build is queued (again, if it was
    cancelled while the chain was broken), and the builds below the head are cancelled."""
    if branch is None or placement is None or not placement.moved_head:
        return []
    if placement.walked and placement.head_sha is not None:
        _find_or_create_build(session, repository_id, placement.head_sha, requeue=True)
    repository = session.get(Repository, repository_id)
    if repository is None or not _supersedes(repository, branch):
        return []
    return _cancel_below_head(session, repository_id, branch, placement, recorded)


def _cancel_below_head(
    session: Session,
    repository_id: int,
    branch: str,
    placement: heads.Placement,
    recorded: RecordedPush,
) -> list[int]:
    head_sha = placement.head_sha
    if head_sha is None:  # a deletion: nothing to build on the branch any more
        keep_build_id = 0
    else:
        head_build = _existing_build(session, repository_id, head_sha)
        keep_build_id = head_build[0] if head_build is not None else 0
    return cancel_superseded_builds(
        session,
        repository_id,
        branch=branch,
        head_position=placement.head_position,
        push_id=recorded.head_push_id or recorded.push_id,
        sha=head_sha or "deleted",
        keep_build_id=keep_build_id,
    )


def _existing_build(
    session: Session, repository_id: int, sha: str
) -> tuple[int, str, int, BuildAction] | None:
    params = {"repository_id": repository_id, "sha": sha}
    row = session.connection().execute(_SELECT_BUILD, params).first()
    if row is None:
        return None
    return row.id, row.status, row.attempt, BuildAction.EXISTING


def _find_or_create_build(
    session: Session, repository_id: int, sha: str, *, requeue: bool = True
) -> tuple[int, str, int, BuildAction]:
    build = lifecycle.build_sha(session, repository_id, sha, requeue_cancelled=requeue)
    return build.id, build.status, build.attempt, build.action


def _supersedes(repository: Repository, branch: str) -> bool:
    if not repository.cancel_superseded:
        return False
    return not matches_any(branch, repository.effective_protected_branches())


def cancel_superseded_builds(
    session: Session,
    repository_id: int,
    *,
    branch: str,
    head_position: int,
    push_id: int,
    sha: str,
    keep_build_id: int,
) -> list[int]:
    """Cancels, through the build lifecycle, the queued or running builds of `branch` pushed
    before its head (at `head_position` in the branch's history; push `push_id` of `sha`),
    except the head's build and builds that are still the head of another branch or a tag's
    build. Returns the ids it cancelled, oldest first."""
    params = {
        "of_repository": repository_id,
        "branch": branch,
        "head_position": head_position,
        "keep_build_id": keep_build_id,
    }
    return lifecycle.cancel_superseded(
        session, _SUPERSEDED_CANDIDATES, params, push_id=push_id, sha=sha
    )


def _superseded_candidates_query() -> Any:
    pushed_here = aliased(Push, name="pushed_here")
    tagged = aliased(Push, name="tagged")
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
            pushed_here.position < bindparam("head_position"),
        )
        .correlate(Build)
    )
    # Still wanted: the head of another branch (by the branches' known heads), or a tag's build.
    head_elsewhere = (
        exists()
        .where(
            KnownBranchHead.repository_id == Build.repository_id,
            KnownBranchHead.sha == Build.sha,
            KnownBranchHead.branch != branch,
        )
        .correlate(Build)
    )
    a_tags_build = (
        exists().where(tagged.build_id == Build.id, tagged.tag.is_not(None)).correlate(Build)
    )
    return select(Build.id).where(
        Build.repository_id == repository_id,
        is_active(),
        was_pushed_to_branch,
        ~head_elsewhere,
        ~a_tags_build,
    )


# Built once: the lifecycle caches its UPDATE per candidates statement.
_SUPERSEDED_CANDIDATES = _superseded_candidates_query().where(
    Build.id != bindparam("keep_build_id")
)
