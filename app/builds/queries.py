"""Queries on builds, the pushes that point at them and their images."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    SQLColumnExpression,
    String,
    bindparam,
    exists,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from app.models import Build, BuildStatus, Image, Push, Repository

FULL_SHA_LENGTH = 40


@dataclass(frozen=True)
class BuildFilters:
    repository_id: int | None = None
    branch: str | None = None
    sha: str | None = None  # lowercase hex, full or a prefix
    statuses: frozenset[BuildStatus] = field(default_factory=frozenset)
    queued_since: datetime | None = None
    queued_until: datetime | None = None


def list_page(
    session: Session, filters: BuildFilters, *, before_id: int | None, limit: int
) -> list[tuple[Build, str]]:
    """Newest first (by id), strictly older than `before_id`; each build with its repository."""
    query = (
        select(Build, Repository.full_name)
        .join(Repository, Repository.id == Build.repository_id)
        .order_by(Build.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(Build.id < before_id)
    if filters.repository_id is not None:
        query = query.where(Build.repository_id == filters.repository_id)
    if filters.branch is not None:
        query = query.where(
            exists().where(
                Push.build_id == Build.id,
                Push.repository_id == Build.repository_id,
                Push.branch == filters.branch,
            )
        )
    if filters.sha is not None:
        if len(filters.sha) == FULL_SHA_LENGTH:
            query = query.where(Build.sha == filters.sha)
        else:
            # The range lets the (repository_id, sha) index serve a prefix; LIKE keeps the
            # answer exact whatever the database collation.
            query = query.where(
                Build.sha >= filters.sha,
                Build.sha < filters.sha + "g",
                Build.sha.startswith(filters.sha, autoescape=True),
            )
    if filters.statuses:
        query = query.where(Build.status.in_(sorted(s.value for s in filters.statuses)))
    if filters.queued_since is not None:
        query = query.where(Build.queued_at >= filters.queued_since)
    if filters.queued_until is not None:
        query = query.where(Build.queued_at < filters.queued_until)
    return [(build, full_name) for build, full_name in session.execute(query)]


def branches_of(session: Session, build_ids: list[int]) -> dict[int, list[str]]:
    """The branches pushed to each build's commit, in the order they were first pushed."""
    branches: dict[int, list[str]] = {build_id: [] for build_id in build_ids}
    if not build_ids:
        return branches
    rows = session.execute(
        select(Push.build_id, Push.branch)
        .where(Push.build_id.in_(build_ids), Push.branch.is_not(None))
        .order_by(Push.id)
    )
    for build_id, branch in rows:
        if build_id is not None and branch is not None and branch not in branches[build_id]:
            branches[build_id].append(branch)
    return branches


def repository_name(session: Session, repository_id: int) -> str:
    return session.execute(
        select(Repository.full_name).where(Repository.id == repository_id)
    ).scalar_one()


def pushes_of(session: Session, build_id: int) -> list[Push]:
    return list(session.scalars(select(Push).where(Push.build_id == build_id).order_by(Push.id)))


def image_of(session: Session, build_id: int) -> Image | None:
    return session.scalar(select(Image).where(Image.build_id == build_id))


@dataclass(frozen=True)
class BranchHead:
    """A push that answers "latest green": a green build, or the branch's deletion."""

    push_id: int
    deleted: bool
    build_id: int | None
    sha: str | None
    finished_at: datetime | None
    image_name: str | None
    image_tag: str | None
    image_digest: str | None
    roles: dict[str, Any] | None


def latest_green_statement(
    repository_id: int | SQLColumnExpression[int], branch: str | SQLColumnExpression[str]
) -> Select:
    """The newest push on the branch, in its history's order (`pushes.position`, not arrival),
    that either deleted it or points at a succeeded build.

    One backward walk of the (repository_id, branch, position, id) index that stops at the first
    hit, so the cost depends on how many pushes since the last green one, not on the branch's
    history.
    """
    return (
        select(
            Push.id,
            Push.deleted,
            Build.id,
            Build.sha,
            Build.finished_at,
            Image.name,
            Image.tag,
            Image.manifest_digest,
            Image.roles,
        )
        .select_from(Push)
        .outerjoin(Build, Build.id == Push.build_id)
        .outerjoin(Image, Image.build_id == Build.id)
        .where(
            Push.repository_id == repository_id,
            # `branch BETWEEN b AND b` is `branch = b`, spelled so the planner keeps the column
            # in the sort order below, which only the (repository_id, branch, position, id) index
            # yields.
            # With an equality the order reduces to `position DESC`, and the planner may walk
            # another index backwards looking for a branch that was last pushed long ago (or never).
            Push.branch.between(branch, branch),
            or_(Push.deleted.is_(True), Build.status == BuildStatus.SUCCEEDED.value),
        )
        .order_by(Push.branch.desc(), Push.position.desc(), Push.id.desc())
        .limit(1)
    )


def latest_green_or_deletion(
    session: Session, repository_id: int, branch: str
) -> BranchHead | None:
    row = session.execute(latest_green_statement(repository_id, branch)).first()
    return None if row is None else BranchHead(*row)


def latest_green_by_name_statement(
    full_name: str | SQLColumnExpression[str], branch: str | SQLColumnExpression[str]
) -> Select:
    head = latest_green_statement(Repository.id, branch).lateral("head")
    return (
        select(Repository.full_name, head)
        .select_from(Repository)
        .outerjoin(head, true())
        .where(Repository.full_name == full_name)
    )


# Built once: constructing this statement costs more than running it.
_LATEST_GREEN_BY_NAME = latest_green_by_name_statement(
    bindparam("full_name", type_=String()), bindparam("branch", type_=String())
)


@dataclass(frozen=True)
class RepositoryBranchHead:
    repository: str
    head: BranchHead | None


def latest_green_by_name(
    session: Session, full_name: str, branch: str
) -> RepositoryBranchHead | None:
    """The repository named exactly `full_name` and its branch's answer, in one round trip
    (deploy tooling asks often); None when no repository has exactly that name, or when the
    database has no LATERAL join (SQLite): callers then look the repository up first."""
    if session.get_bind().dialect.name == "sqlite":
        return None
    row = session.execute(_LATEST_GREEN_BY_NAME, {"full_name": full_name, "branch": branch}).first()
    if row is None:
        return None
    name, *found = row
    return RepositoryBranchHead(name, None if found[0] is None else BranchHead(*found))


def latest_pushes_of(session: Session, build_ids: list[int]) -> dict[int, Push]:
    """Each build's most recent push (its commit subject and pusher, for lists)."""
    if not build_ids:
        return {}
    newest = (
        select(Push.build_id, func.max(Push.id).label("push_id"))
        .where(Push.build_id.in_(build_ids))
        .group_by(Push.build_id)
        .subquery()
    )
    pushes = session.scalars(select(Push).join(newest, newest.c.push_id == Push.id))
    return {push.build_id: push for push in pushes if push.build_id is not None}


def branch_heads(session: Session, repository_id: int, limit: int) -> list[Push]:
    """The last push of each of the repository's branches, most recently pushed first."""
    newest = (
        select(func.max(Push.id).label("push_id"))
        .where(Push.repository_id == repository_id, Push.branch.is_not(None))
        .group_by(Push.branch)
        .subquery()
    )
    query = (
        select(Push).join(newest, newest.c.push_id == Push.id).order_by(Push.id.desc()).limit(limit)
    )
    return list(session.scalars(query))
