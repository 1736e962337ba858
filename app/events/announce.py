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

CHANNEL = "cartridge_events"


def announce_build_change(session: Session, build_id: int) -> None:
    """Records the build's current status as a `build_events` row (what the event stream
    replays) and notifies listeners. Call it after every change of a build's status, and when a
    build is created."""
    connection = session.connection()
    connection.execute(_record_event(), {"build_id": build_id, "now": utcnow()})
    _notify(session, f"b:{build_id}")


def announce_log_append(session: Session, build_id: int, attempt: int, length: int) -> None:
    """Notifies listeners that the attempt's log is now `length` characters long. The text
    itself is read from `build_log_chunks`, which the event stream also follows."""
    _notify(session, f"l:{build_id}:{attempt}:{length}")


def _notify(session: Session, payload: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(_NOTIFY, {"payload": payload})


_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :payload)")


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
