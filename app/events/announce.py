"""Telling live streams that a build changed or its log grew.

Both functions are called in the transaction that made the change; the note they leave is seen
only if it commits. On PostgreSQL they also `NOTIFY` (delivered at commit, dropped on rollback),
which wakes the API processes' streams at once; on SQLite streams poll.

Payloads on the channel: `b:<build id>` (the build's status changed) and
`l:<build id>:<attempt>:<log length>` (the log grew).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.orm import Session

from app.models import Build, BuildEvent
from app.models.base import utcnow

CHANNEL = "cartridge_events"  # spelled out in the statements below


def announce_build_change(session: Session, build_id: int) -> None:
    """Records the build's current status as a `build_events` row (what the event stream
    replays) and notifies listeners. Call it after every change of a build's status, and when a
    build is created."""
    params = {"build_id": build_id, "now": utcnow()}
    if session.get_bind().dialect.name == "postgresql":
        # The row and the notification in one round trip: this runs on every status change.
        session.connection().execute(_RECORD_AND_NOTIFY, params)
    else:
        session.connection().execute(_record_event(), params)


def announce_log_append(session: Session, build_id: int, attempt: int, length: int) -> None:
    """Notifies listeners that the attempt's log is now `length` characters long. The text
    itself is read from `build_log_chunks`, which the event stream also follows."""
    _notify(session, f"l:{build_id}:{attempt}:{length}")


def _notify(session: Session, payload: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(_NOTIFY, {"payload": payload})


_NOTIFY = text("SELECT pg_notify('cartridge_events', :payload)")
_RECORD_AND_NOTIFY = text(
    """
    WITH event AS (
        INSERT INTO build_events (build_id, repository_id, status, attempt, created_at)
        SELECT id, repository_id, status, attempt, :now FROM builds WHERE id = :build_id
        RETURNING build_id
    )
    SELECT pg_notify('cartridge_events', 'b:' || build_id) FROM event
    """
).bindparams(bindparam("now", type_=BuildEvent.__table__.c.created_at.type))


@cache
def _record_event() -> Any:
    """`INSERT INTO build_events ... SELECT` the build's status and attempt as they are now,
    in this transaction: one statement, built once."""
    return insert(BuildEvent).from_select(
        ["build_id", "repository_id", "status", "attempt", "created_at"],
        select(
            Build.id,
            Build.repository_id,
            Build.status,
            Build.attempt,
            bindparam("now", type_=BuildEvent.__table__.c.created_at.type),
        ).where(Build.id == bindparam("build_id")),
    )
