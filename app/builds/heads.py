"""Each branch's known head: the commit Cartridge believes the branch points at.

Webhook pushes move it; the reconciler compares it with the heads GitHub lists and moves it only
from the head it read before asking GitHub, so a webhook that arrived meanwhile is never undone.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.models import KnownBranchHead
from app.models.base import utcnow

_heads: Table = KnownBranchHead.__table__  # type: ignore[assignment]

_KNOWN = select(_heads.c.branch, _heads.c.sha).where(
    _heads.c.repository_id == bindparam("of_repository")
)
_MOVE_FROM = (
    update(_heads)
    .where(
        _heads.c.repository_id == bindparam("of_repository"),
        _heads.c.branch == bindparam("of_branch"),
        _heads.c.sha.is_not_distinct_from(bindparam("expected_sha", type_=_heads.c.sha.type)),
    )
    .values(sha=bindparam("to_sha"), push_id=bindparam("by_push"), updated_at=bindparam("at"))
    .returning(_heads.c.branch)
)


@cache
def _upsert(dialect: str) -> Any:
    statement = dialect_insert(dialect, _heads).values(
        repository_id=bindparam("of_repository"),
        branch=bindparam("of_branch"),
        sha=bindparam("to_sha"),
        push_id=bindparam("by_push"),
        updated_at=bindparam("at"),
    )
    return statement.on_conflict_do_update(
        index_elements=["repository_id", "branch"],
        set_={
            "sha": statement.excluded.sha,
            "push_id": statement.excluded.push_id,
            "updated_at": statement.excluded.updated_at,
        },
    )


@cache
def _insert_new(dialect: str) -> Any:
    return (
        dialect_insert(dialect, _heads)
        .values(
            repository_id=bindparam("of_repository"),
            branch=bindparam("of_branch"),
            sha=bindparam("to_sha"),
            push_id=bindparam("by_push"),
            updated_at=bindparam("at"),
        )
        .on_conflict_do_nothing(index_elements=["repository_id", "branch"])
        .returning(_heads.c.branch)
    )


def known_heads(session: Session, repository_id: int) -> dict[str, str | None]:
    """Every branch Cartridge knows of and its head (None: deleted)."""
    rows = session.connection().execute(_KNOWN, {"of_repository": repository_id})
    return {row.branch: row.sha for row in rows}


def known_heads_of(session: Session, repository_ids: list[int]) -> dict[int, dict[str, str | None]]:
    """`known_heads` of several repositories in one query."""
    found: dict[int, dict[str, str | None]] = {
        repository_id: {} for repository_id in repository_ids
    }
    if not repository_ids:
        return found
    query = select(_heads.c.repository_id, _heads.c.branch, _heads.c.sha).where(
        _heads.c.repository_id.in_(repository_ids)
    )
    for row in session.connection().execute(query):
        found[row.repository_id][row.branch] = row.sha
    return found


def record_push_head(
    session: Session, repository_id: int, branch: str, sha: str | None, push_id: int | None
) -> None:
    """A webhook push of `branch` to `sha` (None: the branch was deleted)."""
    dialect = session.get_bind().dialect.name
    session.connection().execute(
        _upsert(dialect),
        {
            "of_repository": repository_id,
            "of_branch": branch,
            "to_sha": sha,
            "by_push": push_id,
            "at": utcnow(),
        },
    )


def move_head(
    session: Session,
    repository_id: int,
    branch: str,
    *,
    expected: str | None,
    known: bool,
    sha: str | None,
    push_id: int | None,
) -> bool:
    """Moves the head from `expected` to `sha` if it is still `expected` (`known`: whether the
    branch had a head row at all). Returns whether it moved."""
    params = {
        "of_repository": repository_id,
        "of_branch": branch,
        "expected_sha": expected,
        "to_sha": sha,
        "by_push": push_id,
        "at": utcnow(),
    }
    statement = _MOVE_FROM if known else _insert_new(session.get_bind().dialect.name)
    return session.connection().execute(statement, params).first() is not None


def attach_push(session: Session, repository_id: int, branch: str, push_id: int) -> None:
    """Names the push that recorded the current head."""
    session.connection().execute(
        update(_heads)
        .where(_heads.c.repository_id == repository_id, _heads.c.branch == branch)
        .values(push_id=push_id)
    )
