"""The build state machine. Every change of status is a conditional UPDATE from the expected
status, so a duplicated, retried or late task that lost the race changes nothing.

    queued  -> running | cancelled
    running -> succeeded | failed | errored | cancelled | queued (lease expired, retried)
    failed | errored | cancelled -> queued (retry: a new attempt)
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import ClauseElement, Table, bindparam, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app.events.announce import announce_build_change
from app.models import Build, BuildStatus
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
    next_attempt: int | None = None,
    **values: Any,
) -> bool:
    """Moves the build to `target` if it is in one of the `expected` statuses (by default, any
    status `target` may be reached from) and, when given, still on `attempt`. Returns whether it
    moved. The in-session object, if loaded, is refreshed. `values` are further columns to set,
    as values or SQL expressions (`lease_retries=Build.lease_retries + 1`); `next_attempt`
    starts a new attempt in the same UPDATE."""
    if next_attempt is not None:
        values["attempt"] = next_attempt
    allowed = sources_of(target)
    sources = allowed if expected is None else frozenset(expected) & allowed
    if not sources:
        return False
    plain_values = not any(isinstance(value, ClauseElement) for value in values.values())
    if plain_values and _loaded(session, build_id) is None:
        # Not loaded: a Core UPDATE, much cheaper than the ORM's, and nothing to refresh (a
        # later load in this transaction sees the change).
        statement = _core_update(target, sources, attempt is not None, tuple(sorted(values)))
        params = {f"new_{name}": value for name, value in values.items()}
        params.update(build_id=build_id, expected_attempt=attempt)
        if not session.connection().execute(statement, params).first():
            return False
        record_status(session, build_id)
        announce_build_change(session, build_id)
        return True
    # RETURNING refreshes the build in the session, if loaded, in the same round trip.
    condition = [Build.id == build_id, Build.status.in_([s.value for s in sources])]
    if attempt is not None:
        condition.append(Build.attempt == attempt)
    moved = session.scalars(
        update(Build).where(*condition).values(status=target.value, **values).returning(Build),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).first()
    if moved is None:
        return False
    # The commit status GitHub owes is recorded in this same transaction.
    record_status(session, moved)
    announce_build_change(session, build_id)
    return True


def forget_loaded(session: Session, build_id: int) -> None:
    """Expires the build in the session, if loaded, after a Core statement changed its row."""
    loaded = _loaded(session, build_id)
    if loaded is not None:
        session.expire(loaded)


def _loaded(session: Session, build_id: int) -> object | None:
    """The build's object in the session's identity map, without loading it."""
    return session.identity_map.get(identity_key(Build, build_id))


@cache
def _core_update(
    target: BuildStatus, sources: frozenset[BuildStatus], on_attempt: bool, columns: tuple[str, ...]
) -> Any:
    """The conditional UPDATE for one kind of move, built once: building it costs more than
    running it. Parameters: `build_id`, `expected_attempt` and `new_<column>`."""
    builds: Table = Build.__table__  # type: ignore[assignment]
    condition = [
        builds.c.id == bindparam("build_id"),
        builds.c.status.in_(sorted(source.value for source in sources)),
    ]
    if on_attempt:
        condition.append(builds.c.attempt == bindparam("expected_attempt"))
    changes: dict[str, Any] = {
        name: bindparam(f"new_{name}", type_=builds.c[name].type) for name in columns
    }
    return (
        update(builds)
        .where(*condition)
        .values(status=target.value, **changes)
        .returning(builds.c.id)
    )
