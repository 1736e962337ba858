"""The build lifecycle: every write to a build's status, and the enqueue of every attempt.

    queued  -> running | cancelled
    running -> succeeded | failed | errored | cancelled | queued (handed back, or lease expired)
    failed | errored | cancelled -> queued (retry, or a cancelled build pushed again: a new attempt)

Every move is one conditional UPDATE from the statuses it may leave (and, where given, on the
attempt the caller owns), so a duplicated, retried or late task that lost the race changes
nothing. Each move records the commit status GitHub owes in the same transaction; each move to
`queued` (a new build, a new attempt) enqueues the build job through the outbox in it too.
Nothing outside this module writes `builds.status`.

Two moves keep the status: `redispatch` sends a queued build's job again (the broker lost it),
and `await_quorum` leaves a running build whose image misses the replica quorum to the repair
job, with a deadline and no worker (`app/builds/quorum.py` finishes it).

The UPDATEs are Core statements built once per kind of move: the webhook receiver runs them on
every push, and building an expression costs more than running it. A build already loaded in the
session is expired, so its next read sees the move.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Select, Table, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app.broker import BUILD_TASK
from app.builds import logs
from app.config import get_settings
from app.engine import dialect_insert
from app.events.announce import announce_build_change
from app.models import Build, BuildStatus
from app.models.base import utcnow
from app.outbox.service import enqueue
from app.statuses.service import record_status

ALLOWED: dict[BuildStatus, frozenset[BuildStatus]] = {
    BuildStatus.QUEUED: frozenset({BuildStatus.RUNNING, BuildStatus.CANCELLED}),
    BuildStatus.RUNNING: frozenset(
        {
            BuildStatus.SUCCEEDED,
            BuildStatus.FAILED,
            BuildStatus.ERRORED,
            BuildStatus.CANCELLED,
            BuildStatus.QUEUED,
        }
    ),
    BuildStatus.SUCCEEDED: frozenset(),
    BuildStatus.FAILED: frozenset({BuildStatus.QUEUED}),
    BuildStatus.ERRORED: frozenset({BuildStatus.QUEUED}),
    BuildStatus.CANCELLED: frozenset({BuildStatus.QUEUED}),
}
RETRYABLE = frozenset({BuildStatus.FAILED, BuildStatus.ERRORED, BuildStatus.CANCELLED})
CANCELLABLE = frozenset({BuildStatus.QUEUED, BuildStatus.RUNNING})
RUNNING = frozenset({BuildStatus.RUNNING})

_builds: Table = Build.__table__  # type: ignore[assignment]


def sources_of(target: BuildStatus) -> frozenset[BuildStatus]:
    """The statuses a build may move to `target` from."""
    return frozenset(source for source, targets in ALLOWED.items() if target in targets)


def transition(
    session: Session,
    build_id: int,
    target: BuildStatus,
    *,
    expected: Iterable[BuildStatus] | None = None,
    attempt: int | None = None,
    **values: Any,
) -> bool:
    """Moves the build to `target` if it is in one of the `expected` statuses (by default, any
    status `target` may be reached from) and, when given, still on `attempt`. Returns whether it
    moved. `values` are further columns to set (plain values)."""
    return _move(session, build_id, target, expected, attempt, values)


def _move(
    session: Session,
    build_id: int,
    target: BuildStatus,
    expected: Iterable[BuildStatus] | None,
    attempt: int | None,
    values: dict[str, Any],
) -> bool:
    allowed = sources_of(target)
    sources = allowed if expected is None else frozenset(expected) & allowed
    if not sources:
        return False
    statement = _update_one(target, sources, attempt is not None, tuple(sorted(values)))
    params = {f"new_{name}": value for name, value in values.items()}
    params.update(build_id=build_id, expected_attempt=attempt)
    if session.connection().execute(statement, params).first() is None:
        return False
    _forget_loaded(session, build_id)
    record_status(session, build_id)
    announce_build_change(session, build_id)
    return True


# -- a new build, and new attempts -------------------------------------------------------------


class BuildAction(enum.StrEnum):
    CREATED = "created"
    REQUEUED = "requeued"  # a cancelled build pushed again: a new attempt
    EXISTING = "existing"  # the push shares a build that already exists


@dataclass(frozen=True)
class BuildOfSha:
    id: int
    status: str
    attempt: int
    action: BuildAction


def build_sha(
    session: Session, repository_id: int, sha: str, *, requeue_cancelled: bool = True
) -> BuildOfSha:
    """The build of `sha`, queued (and its job enqueued) if it is new; a cancelled build is
    queued again as a new attempt. Failed and errored builds are rebuilt only by `retry`.

    A SHA is built once per repository: concurrent pushes of one SHA share one row, created with
    INSERT .. ON CONFLICT DO NOTHING so that concurrent inserts never fail."""
    params = {"repository_id": repository_id, "sha": sha}
    dialect = session.get_bind().dialect.name
    created = session.connection().execute(_insert_build(dialect), params).first()
    if created is not None:
        _enqueue_attempt(session, created.id)
        record_status(session, created.id)
        announce_build_change(session, created.id)
        return BuildOfSha(created.id, created.status, created.attempt, BuildAction.CREATED)
    found = session.connection().execute(_SELECT_BUILD, params).one()
    if (
        requeue_cancelled
        and found.status == BuildStatus.CANCELLED
        and retry(session, found.id, attempt=found.attempt, expected={BuildStatus.CANCELLED})
    ):
        return BuildOfSha(
            found.id, BuildStatus.QUEUED.value, found.attempt + 1, BuildAction.REQUEUED
        )
    return BuildOfSha(found.id, found.status, found.attempt, BuildAction.EXISTING)


def retry(
    session: Session,
    build_id: int,
    *,
    attempt: int,
    expected: Iterable[BuildStatus] = RETRYABLE,
) -> bool:
    """Queues a finished build again as attempt `attempt + 1`, if it is still in one of
    `expected` on `attempt`, and enqueues its job."""
    values = _fresh_attempt(attempt)
    values.update(finished_at=None, lease_retries=0, cancel_reason=None, superseded_by_push_id=None)
    if not _move(
        session, build_id, BuildStatus.QUEUED, expected=expected, attempt=attempt, values=values
    ):
        return False
    _enqueue_attempt(session, build_id)
    return True


def requeue(
    session: Session, build_id: int, attempt: int, *, note: str, lease_retries: int | None = None
) -> bool:
    """Gives running attempt `attempt` back to the queue as attempt `attempt + 1` (its worker was
    lost, or is shutting down) and enqueues it; `lease_retries` counts lost workers. The note
    ends the attempt's log. Returns False if the build no longer runs that attempt."""
    values = _fresh_attempt(attempt)
    if lease_retries is not None:
        values["lease_retries"] = lease_retries
    if not _move(
        session, build_id, BuildStatus.QUEUED, expected=RUNNING, attempt=attempt, values=values
    ):
        return False
    logs.append(session, build_id, attempt, f"==> {note}; queued again as attempt {attempt + 1}\n")
    _enqueue_attempt(session, build_id)
    return True


def _fresh_attempt(attempt: int) -> dict[str, Any]:
    return {
        "attempt": attempt + 1,
        "queued_at": utcnow(),
        "started_at": None,
        "heartbeat_at": None,
        "lease_expires_at": None,
        "build_host": None,
        "error": None,
        "redispatched_at": None,
        "redispatches": 0,
        "quorum_deadline_at": None,
    }


def redispatch(session: Session, build_id: int, *, attempt: int, at: datetime) -> bool:
    """Sends the job of queued attempt `attempt` again (its message was lost with the broker's
    queue, or an operator asks). The build stays queued on the same attempt; whichever message
    arrives first claims it and the others find it no longer queued."""
    moved = session.connection().execute(
        _REDISPATCH, {"build_id": build_id, "expected_attempt": attempt, "now": at}
    )
    if moved.first() is None:
        return False
    _forget_loaded(session, build_id)
    _enqueue_attempt(session, build_id)
    return True


def _enqueue_attempt(session: Session, build_id: int) -> None:
    enqueue(session, BUILD_TASK, [build_id], queue=get_settings().build_queue)


# -- running and finishing ---------------------------------------------------------------------


def claim(session: Session, build_id: int, *, host: str, lease_seconds: int) -> Build | None:
    """Moves the build from queued to running on `host`, with a fresh lease. Returns the build,
    or None if it was not queued (a duplicate or late job)."""
    build = session.get(Build, build_id)
    if build is None or build.status != BuildStatus.QUEUED:
        return None
    now = utcnow()
    values = {
        "started_at": now,
        "finished_at": None,
        "build_host": host,
        "heartbeat_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }
    if not _move(
        session,
        build_id,
        BuildStatus.RUNNING,
        expected={BuildStatus.QUEUED},
        attempt=build.attempt,
        values=values,
    ):
        return None
    return build


def finish(
    session: Session, build_id: int, attempt: int, status: BuildStatus, *, error: str | None
) -> bool:
    """Records the outcome of running attempt `attempt`, if it still owns the build."""
    values = {
        "finished_at": utcnow(),
        "error": error,
        "lease_expires_at": None,
        "quorum_deadline_at": None,
    }
    return _move(session, build_id, status, RUNNING, attempt, values)


def await_quorum(
    session: Session, build_id: int, attempt: int, *, until: datetime, report: str
) -> bool:
    """Running attempt `attempt` built and pushed its image, but not onto enough replicas yet:
    the build stays running, held by no worker, until the repair job completes the quorum
    (`finish`: succeeded) or `until` passes (`finish`: errored)."""
    moved = session.connection().execute(
        _AWAIT_QUORUM, {"build_id": build_id, "expected_attempt": attempt, "until": until}
    )
    if moved.first() is None:
        return False
    _forget_loaded(session, build_id)
    logs.append(
        session,
        build_id,
        attempt,
        f"==> waiting until {until.isoformat(timespec='seconds')} for the replica quorum: "
        f"{report}\n",
    )
    record_status(session, build_id)
    return True


def error_lost(session: Session, build_id: int, attempt: int, *, error: str, at: datetime) -> bool:
    """Ends running attempt `attempt` as errored: its worker was lost once too often."""
    values = {"error": error, "finished_at": at, "lease_expires_at": None}
    if not _move(
        session, build_id, BuildStatus.ERRORED, expected=RUNNING, attempt=attempt, values=values
    ):
        return False
    logs.append(session, build_id, attempt, f"==> errored: {error}\n")
    return True


# -- cancelling --------------------------------------------------------------------------------


def cancel(session: Session, build_id: int, *, reason: str) -> bool:
    """Cancels a queued or running build; its worker notices at the next heartbeat."""
    values = {"cancel_reason": reason[:500], "finished_at": utcnow(), "quorum_deadline_at": None}
    return _move(
        session, build_id, BuildStatus.CANCELLED, expected=CANCELLABLE, attempt=None, values=values
    )


def cancel_superseded(
    session: Session, candidates: Select[Any], params: dict[str, Any], *, push_id: int, sha: str
) -> list[int]:
    """Cancels the builds `candidates` selects (ids; `params` are its parameters) as superseded
    by push `push_id` of `sha`. Returns the ids it cancelled, oldest first.

    One conditional UPDATE finds and cancels them: it runs on every branch push. Like every move,
    it changes only builds still in a status a cancel may leave, re-checked row by row against
    concurrent changes."""
    values = {
        **params,
        "superseded_reason": f"Superseded by {sha[:SHORT_SHA_LENGTH]}",
        "superseded_by_push": push_id,
        "now": utcnow(),
    }
    statement = _cancel_superseded_statement(candidates)
    cancelled = sorted(session.connection().execute(statement, values).scalars())
    for build_id in cancelled:
        _forget_loaded(session, build_id)
        record_status(session, build_id)
        announce_build_change(session, build_id)
    return cancelled


SHORT_SHA_LENGTH = 7


# -- statements, built once --------------------------------------------------------------------


def _forget_loaded(session: Session, build_id: int) -> None:
    """Expires the build in the session, if loaded: the row changed behind the ORM's back."""
    loaded = session.identity_map.get(identity_key(Build, build_id))
    if loaded is not None:
        session.expire(loaded)


@cache
def _update_one(
    target: BuildStatus, sources: frozenset[BuildStatus], on_attempt: bool, columns: tuple[str, ...]
) -> Any:
    """The conditional UPDATE of one build for one kind of move. Parameters: `build_id`,
    `expected_attempt` and `new_<column>`."""
    condition = [
        _builds.c.id == bindparam("build_id"),
        _builds.c.status.in_(sorted(source.value for source in sources)),
    ]
    if on_attempt:
        condition.append(_builds.c.attempt == bindparam("expected_attempt"))
    changes = {name: bindparam(f"new_{name}", type_=_builds.c[name].type) for name in columns}
    return (
        update(_builds)
        .where(*condition)
        .values(status=target.value, **changes)
        .returning(_builds.c.id)
    )


@cache
def _cancel_superseded_statement(candidates: Select[Any]) -> Any:
    leavable = sorted(status.value for status in sources_of(BuildStatus.CANCELLED))
    return (
        update(_builds)
        .where(_builds.c.id.in_(candidates.scalar_subquery()), _builds.c.status.in_(leavable))
        .values(
            status=BuildStatus.CANCELLED.value,
            cancel_reason=bindparam("superseded_reason", type_=_builds.c.cancel_reason.type),
            superseded_by_push_id=bindparam("superseded_by_push", type_=_builds.c.id.type),
            finished_at=bindparam("now", type_=_builds.c.finished_at.type),
            quorum_deadline_at=None,
        )
        .returning(_builds.c.id)
    )


@cache
def _insert_build(dialect: str) -> Any:
    return (
        dialect_insert(dialect, Build)
        .values(repository_id=bindparam("repository_id"), sha=bindparam("sha"))
        .on_conflict_do_nothing(index_elements=["repository_id", "sha"])
        .returning(Build.id, Build.status, Build.attempt)
    )


_REDISPATCH = (
    update(_builds)
    .where(
        _builds.c.id == bindparam("build_id"),
        _builds.c.attempt == bindparam("expected_attempt"),
        _builds.c.status == BuildStatus.QUEUED.value,
    )
    .values(
        redispatched_at=bindparam("now", type_=_builds.c.redispatched_at.type),
        redispatches=_builds.c.redispatches + 1,
    )
    .returning(_builds.c.id)
)
_AWAIT_QUORUM = (
    update(_builds)
    .where(
        _builds.c.id == bindparam("build_id"),
        _builds.c.attempt == bindparam("expected_attempt"),
        _builds.c.status == BuildStatus.RUNNING.value,
    )
    .values(
        quorum_deadline_at=bindparam("until", type_=_builds.c.quorum_deadline_at.type),
        lease_expires_at=None,
    )
    .returning(_builds.c.id)
)
_SELECT_BUILD = select(Build.id, Build.status, Build.attempt).where(
    Build.repository_id == bindparam("repository_id"), Build.sha == bindparam("sha")
)
