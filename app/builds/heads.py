"""Each branch's known head, and the order of its history: which push is the newest.

GitHub does not deliver webhooks in order, so arrival order says nothing. Each push names the
head it replaced (`before`; a force push names the head it overwrote), and `place` puts a push in
its branch's history by that chain, under a lock on the branch's head row, so concurrent pushes of
one branch are placed one at a time:

1. the branch's first push is its head;
2. a copy of a push already recorded (the same `before` and `after`; GitHub may send one push
   under another delivery GUID) changes nothing, nor does a push of the head itself;
3. a push whose `before` is the head (or that creates a deleted branch again) is the new head,
   and so is, in turn, every push recorded earlier that continues from there (they arrived first);
4. a push that a recorded push of the head's history continues from is older than the head: it
   is history, placed just before its continuation;
5. otherwise the chain is broken (a push in between is missing): the newest known head wins. A
   push GitHub says happened earlier than the head's (`repository.pushed_at`, to the second) is
   placed before the head; any other is the new head, as the last one Cartridge learned of. The
   reconciler settles it against GitHub's branch heads.

A push whose predecessor (the push that made its `before` the head) is not in the history yet is
`linked` false: rule 3 places it again once the chain reaches the commit it replaced, and rule 4
links it once its predecessor arrives.

A push that is not the head never supersedes newer builds and never becomes latest green over a
newer green one: superseding and latest green follow `position`, not arrival.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Table, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from app.engine import dialect_insert
from app.models import KnownBranchHead, Push
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


def lock_head(
    session: Session, repository_id: int, branch: str, *, expected: str | None, known: bool
) -> bool:
    """Locks the branch's head row until the transaction ends and tells whether the head is still
    `expected` (`known`: whether the branch had a head row then)."""
    row = _lock(session, repository_id, branch)
    if row is None:
        return not known
    return known and row.sha == expected


# Placing a push in its branch's history.

ZERO_SHA = "0" * 40
# A chain walked forward stops after this many pushes (a cycle of force pushes cannot loop).
MAX_WALK = 10_000
# Places in a branch's history are this far apart, so that pushes arriving late fit in between
# the pushes around them (twenty late pushes nested in one gap before places are shared).
GAP = 2**20


@dataclass(frozen=True)
class Placement:
    """Where a push goes in its branch's history, and the branch's head afterwards."""

    position: int
    linked: bool
    # Whether the push (or a push it led the chain to) is the branch's new head.
    moved_head: bool
    head_sha: str | None  # None: the branch is deleted
    head_position: int
    # The pushes recorded earlier that the chain reached through this push: (id, new position).
    walked: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class _Head:
    sha: str | None
    position: int
    push_id: int | None
    pushed_at: datetime | None


def place(
    session: Session,
    repository_id: int,
    branch: str,
    *,
    before: str,
    after: str,
    pushed_at: datetime | None,
) -> Placement:
    """Decides the place of a push of `branch` from `before` to `after` (zeros: a deletion) and
    locks the branch's head row until the transaction ends. The caller records the push with
    `position` and `linked`, then calls `settle`."""
    head = _locked_head(session, repository_id, branch)
    target = None if after == ZERO_SHA else after
    if head is None:
        return _walk(session, repository_id, branch, target, GAP, linked=before == ZERO_SHA)
    copy = _copy_position(session, repository_id, branch, before, after)
    if copy is not None or target == head.sha:
        position = copy if copy is not None else head.position
        return Placement(position, True, False, head.sha, head.position)
    if before == head.sha or (head.sha is None and before == ZERO_SHA):
        return _walk(session, repository_id, branch, target, head.position + GAP, linked=True)
    continued = _continuation_position(session, repository_id, branch, after, head.position)
    if continued is not None:
        below = _predecessor_position(session, repository_id, branch, before, continued)
        placement = None
        if below is None and before != ZERO_SHA:
            found = _predecessor_position(session, repository_id, branch, before, None)
            if found is not None:
                # Its predecessor sits above its continuation: stretches of the chain were
                # placed while it was broken. If the chain through this push reaches the head,
                # it is placed again from here up, in the chain's order.
                walk = _walk(
                    session, repository_id, branch, target, head.position + GAP, linked=True
                )
                if walk.head_sha == head.sha:
                    placement = walk
        # Its continuations now have their predecessor in the history.
        session.connection().execute(
            _LINK_CONTINUATIONS,
            {"of_repository": repository_id, "of_branch": branch, "from_sha": after},
        )
        if placement is not None:
            return placement
        position = _between(below, continued)
        return Placement(position, below is not None, False, head.sha, head.position)
    starts = before == ZERO_SHA
    if pushed_at is not None and head.pushed_at is not None and pushed_at < head.pushed_at:
        return Placement(head.position - 1, starts, False, head.sha, head.position)
    return _walk(session, repository_id, branch, target, head.position + GAP, linked=starts)


def _between(below: int | None, above: int) -> int:
    """A place after `below` (the push this one continued from, if recorded) and before
    `above`, as close to `above` as possible when its predecessor is unknown (what lies below
    may be older history). When there is no room left, the push shares its predecessor's place:
    ties are broken by arrival, and it arrived after the push it continued from was recorded."""
    if below is None:
        return above - 1
    if above - below >= 2:
        return below + (above - below) // 2
    return below


def settle(
    session: Session, repository_id: int, branch: str, push_id: int, placement: Placement
) -> int | None:
    """Moves the branch's head as `placement` says, once push `push_id` is recorded, and places
    the pushes the chain reached again. Returns the id of the head's push (None if unknown)."""
    connection = session.connection()
    for walked_id, position in placement.walked:
        connection.execute(_REPLACE, {"push": walked_id, "to_position": position})
    if not placement.moved_head:
        return connection.execute(
            _HEAD_PUSH, {"of_repository": repository_id, "of_branch": branch}
        ).scalar()
    head_push = placement.walked[-1][0] if placement.walked else push_id
    params = {
        "of_repository": repository_id,
        "of_branch": branch,
        "to_sha": placement.head_sha,
        "by_push": head_push,
        "to_position": placement.head_position,
        "at": utcnow(),
    }
    connection.execute(_SET_HEAD, params)
    return head_push


def _walk(
    session: Session,
    repository_id: int,
    branch: str,
    sha: str | None,
    position: int,
    *,
    linked: bool,
) -> Placement:
    """The push becomes the head at `position`; then the pushes recorded earlier that continue
    the chain from it follow: first one whose place was never told from the chain (`linked`
    false), then, from there on, the pushes that were recorded after it in its own stretch of
    the chain (a higher position), each placed above the last."""
    walked: list[tuple[int, int]] = []
    head_sha, head_position = sha, position
    stretch_position: int | None = None  # the walked push's old place, once there is one
    seen: set[int] = set()
    while head_sha is not None and len(walked) < MAX_WALK:
        params = {
            "of_repository": repository_id,
            "of_branch": branch,
            "from_sha": head_sha,
            "above": stretch_position,
        }
        row = session.connection().execute(_NEXT_IN_CHAIN, params).first()
        if row is None or row.id in seen:
            break
        seen.add(row.id)
        head_position += GAP
        walked.append((row.id, head_position))
        stretch_position = row.position
        head_sha = None if row.after_sha == ZERO_SHA else row.after_sha
    return Placement(position, linked, True, head_sha, head_position, tuple(walked))


def _locked_head(session: Session, repository_id: int, branch: str) -> _Head | None:
    """The branch's head, locked; None for a branch's first push, whose head row is then
    claimed (inserted, so locked) at once: a concurrent first push waits for this transaction
    and then finds the row."""
    row = _lock(session, repository_id, branch)
    if row is None:
        params = {"of_repository": repository_id, "of_branch": branch, "at": utcnow()}
        dialect = session.get_bind().dialect.name
        if session.connection().execute(_claim(dialect), params).first() is not None:
            return None
        row = _lock(session, repository_id, branch)
        assert row is not None
    pushed_at = None
    if row.push_id is not None:
        pushed_at = session.connection().execute(_PUSHED_AT, {"push": row.push_id}).scalar()
    return _Head(row.sha, row.position, row.push_id, pushed_at)


def _lock(session: Session, repository_id: int, branch: str) -> Any:
    params = {"of_repository": repository_id, "of_branch": branch}
    return session.connection().execute(_LOCK_HEAD, params).first()


def _copy_position(
    session: Session, repository_id: int, branch: str, before: str, after: str
) -> int | None:
    params = {"of_repository": repository_id, "of_branch": branch, "from_sha": before, "to": after}
    return session.connection().execute(_COPY, params).scalar()


def _predecessor_position(
    session: Session, repository_id: int, branch: str, before: str, above: int | None
) -> int | None:
    """The place of the push that made `before` the head, below `above` (anywhere: None); for
    a push that created the branch, the bottom of the history."""
    params = {"of_repository": repository_id, "of_branch": branch, "to": before, "above": above}
    found = session.connection().execute(_PREDECESSOR, params).scalar()
    if found is None and before == ZERO_SHA and above is not None:
        return min(0, above - 2 * GAP)
    return found


def _continuation_position(
    session: Session, repository_id: int, branch: str, sha: str, head_position: int
) -> int | None:
    """The earliest place, at or before the head, of a push that continued from `sha`."""
    params = {
        "of_repository": repository_id,
        "of_branch": branch,
        "from_sha": sha,
        "head_position": head_position,
    }
    return session.connection().execute(_CONTINUATION, params).scalar()


_pushes: Table = Push.__table__  # type: ignore[assignment]
_on_branch = (
    _pushes.c.repository_id == bindparam("of_repository"),
    _pushes.c.branch == bindparam("of_branch"),
)
_LOCK_HEAD = (
    select(_heads.c.sha, _heads.c.position, _heads.c.push_id)
    .where(
        _heads.c.repository_id == bindparam("of_repository"),
        _heads.c.branch == bindparam("of_branch"),
    )
    .with_for_update()
)
_PUSHED_AT = select(_pushes.c.pushed_at).where(_pushes.c.id == bindparam("push"))
_HEAD_PUSH = select(_heads.c.push_id).where(
    _heads.c.repository_id == bindparam("of_repository"),
    _heads.c.branch == bindparam("of_branch"),
)
_COPY = (
    select(_pushes.c.position)
    .where(
        *_on_branch,
        _pushes.c.before_sha == bindparam("from_sha"),
        _pushes.c.after_sha == bindparam("to"),
    )
    .limit(1)
)
_PREDECESSOR = select(func.max(_pushes.c.position)).where(
    *_on_branch,
    _pushes.c.after_sha == bindparam("to"),
    or_(
        bindparam("above", type_=BigInteger()).is_(None),
        _pushes.c.position < bindparam("above", type_=BigInteger()),
    ),
)
_CONTINUATION = select(func.min(_pushes.c.position)).where(
    *_on_branch,
    _pushes.c.before_sha == bindparam("from_sha"),
    _pushes.c.position <= bindparam("head_position"),
)
# Of several, the one GitHub says was pushed last, then the one received last. With no
# `above` (NULL), only unlinked pushes qualify: a linked one is the head's own history (a force
# push back to an older commit must not walk forward into it again).
_NEXT_IN_CHAIN = (
    select(_pushes.c.id, _pushes.c.after_sha, _pushes.c.position)
    .where(
        *_on_branch,
        _pushes.c.before_sha == bindparam("from_sha"),
        or_(
            _pushes.c.linked.is_(False),
            _pushes.c.position > bindparam("above", type_=BigInteger()),
        ),
    )
    .order_by(_pushes.c.pushed_at.desc().nulls_last(), _pushes.c.id.desc())
    .limit(1)
)
_LINK_CONTINUATIONS = (
    update(_pushes)
    .where(*_on_branch, _pushes.c.before_sha == bindparam("from_sha"))
    .values(linked=True)
)
_REPLACE = (
    update(_pushes)
    .where(_pushes.c.id == bindparam("push"))
    .values(position=bindparam("to_position"), linked=True)
)
_SET_HEAD = (
    update(_heads)
    .where(
        _heads.c.repository_id == bindparam("of_repository"),
        _heads.c.branch == bindparam("of_branch"),
    )
    .values(
        sha=bindparam("to_sha"),
        push_id=bindparam("by_push"),
        position=bindparam("to_position"),
        updated_at=bindparam("at"),
    )
    .returning(_heads.c.branch)
)


@cache
def _claim(dialect: str) -> Any:
    return (
        dialect_insert(dialect, _heads)
        .values(
            repository_id=bindparam("of_repository"),
            branch=bindparam("of_branch"),
            sha=None,
            push_id=None,
            position=0,
            updated_at=bindparam("at"),
        )
        .on_conflict_do_nothing(index_elements=["repository_id", "branch"])
        .returning(_heads.c.branch)
    )
