"""Queries behind the event stream: new build events and log chunks after a cursor."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.events.cursor import SequenceCursor
from app.models import Build, BuildEvent, BuildLogChunk, Repository


class EventRow(NamedTuple):
    id: int
    build_id: int
    repository_id: int
    status: str
    attempt: int


class ChunkRow(NamedTuple):
    id: int
    build_id: int
    repository_id: int
    attempt: int
    end: int  # the log's length once this chunk is in


def build_events_after(session: Session, cursor: SequenceCursor, limit: int) -> list[EventRow]:
    rows = session.execute(
        select(
            BuildEvent.id,
            BuildEvent.build_id,
            BuildEvent.repository_id,
            BuildEvent.status,
            BuildEvent.attempt,
        )
        .where(cursor.unseen(BuildEvent.id))
        .order_by(BuildEvent.id)
        .limit(limit)
    )
    return [EventRow(*row) for row in rows]


def log_chunks_after(session: Session, cursor: SequenceCursor, limit: int) -> list[ChunkRow]:
    """The chunks' positions only: the event stream reports progress, not text."""
    rows = session.execute(
        select(
            BuildLogChunk.id,
            BuildLogChunk.build_id,
            Build.repository_id,
            BuildLogChunk.attempt,
            BuildLogChunk.offset + func.length(BuildLogChunk.content),
        )
        .join(Build, Build.id == BuildLogChunk.build_id)
        .where(cursor.unseen(BuildLogChunk.id))
        .order_by(BuildLogChunk.id)
        .limit(limit)
    )
    return [ChunkRow(*row) for row in rows]


def last_ids(session: Session) -> tuple[int, int]:
    """The newest build event and log chunk ids: where a stream without a cursor starts."""
    events = session.scalar(select(func.max(BuildEvent.id))) or 0
    chunks = session.scalar(select(func.max(BuildLogChunk.id))) or 0
    return int(events), int(chunks)


def build_facts(session: Session, build_ids: list[int]) -> dict[int, tuple[str, str]]:
    """Build id -> (repository full name, SHA)."""
    if not build_ids:
        return {}
    rows = session.execute(
        select(Build.id, Repository.full_name, Build.sha)
        .join(Repository, Repository.id == Build.repository_id)
        .where(Build.id.in_(sorted(set(build_ids))))
    )
    return {build_id: (full_name, sha) for build_id, full_name, sha in rows}
