"""Build logs: append-only chunks per attempt, readable from any offset while the build runs."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.events.announce import announce_log_append
from app.models import BuildLogChunk


@dataclass(frozen=True)
class LogSlice:
    offset: int
    next_offset: int
    content: str


def log_length(session: Session, build_id: int, attempt: int) -> int:
    last = session.execute(
        select(BuildLogChunk.offset, func.length(BuildLogChunk.content))
        .where(BuildLogChunk.build_id == build_id, BuildLogChunk.attempt == attempt)
        .order_by(BuildLogChunk.offset.desc())
        .limit(1)
    ).first()
    return 0 if last is None else int(last[0]) + int(last[1])


def append(session: Session, build_id: int, attempt: int, text: str) -> int:
    """Appends `text` to the attempt's log and returns the new length. One writer per attempt
    (the build's worker); the unique (build, attempt, offset) key rejects a second writer."""
    if not text:
        return log_length(session, build_id, attempt)
    offset = log_length(session, build_id, attempt)
    session.add(BuildLogChunk(build_id=build_id, attempt=attempt, offset=offset, content=text))
    session.flush()
    announce_log_append(session, build_id, attempt, offset + len(text))
    return offset + len(text)


def read(
    session: Session, build_id: int, attempt: int, offset: int = 0, limit: int = 1_000_000
) -> LogSlice:
    """Up to `limit` characters of the log starting at character `offset`."""
    chunks = session.execute(
        select(BuildLogChunk.offset, BuildLogChunk.content)
        .where(
            BuildLogChunk.build_id == build_id,
            BuildLogChunk.attempt == attempt,
            BuildLogChunk.offset + func.length(BuildLogChunk.content) > offset,
        )
        .order_by(BuildLogChunk.offset)
    ).all()
    pieces: list[str] = []
    taken = 0
    for chunk_offset, content in chunks:
        piece = content[max(0, offset - chunk_offset) :]
        piece = piece[: limit - taken]
        pieces.append(piece)
        taken += len(piece)
        if taken >= limit:
            break
    return LogSlice(offset=offset, next_offset=offset + taken, content="".join(pieces))
