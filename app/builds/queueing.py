"""Turning a branch push into a queued build, and the rule of which builds a push supersedes.

A SHA is built once per repository: pushes of the same SHA (another branch, a redelivery, a
concurrent push) share one build row (`lifecycle.build_sha`). The builds a push supersedes are
selected here and cancelled by the build lifecycle (`lifecycle.cancel_superseded`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, TypedDict

from sqlalchemy import bindparam, exists, insert, select
from sqlalchemy.orm import Session, aliased

from app.builds import lifecycle
from app.builds.lifecycle import BuildAction
from app.models import Build, Push, PushDecision, Repository
from app.models.build import is_active


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


_INSERT_PUSH = insert(Push).returning(Push.id)


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
    build = lifecycle.build_sha(session, repository.id, push["after_sha"])
    push_id = record_push(session, push, build.id)
    superseded: list[int] = []
    branch = push["branch"]
    if branch is not None and _supersedes(repository, branch):
        params = {
            "of_repository": repository.id,
            "branch": branch,
            "before_push_id": push_id,
            "keep_build_id": build.id,
        }
        superseded = lifecycle.cancel_superseded(
            session, _SUPERSEDED, params, push_id=push_id, sha=push["after_sha"]
        )
    return QueuedPush(push_id, build.id, build.status, build.attempt, build.action, superseded)


def _supersedes(repository: Repository, branch: str) -> bool:
    if not repository.cancel_superseded:
        return False
    return not matches_any(branch, repository.effective_protected_branches())


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


# The builds of `branch` pushed before push `before_push_id`, still queued or running, except the
# build that push points at (`keep_build_id`) and builds still the head of another branch or a
# tag's build.
_SUPERSEDED = _superseded_candidates_query().where(Build.id != bindparam("keep_build_id"))
