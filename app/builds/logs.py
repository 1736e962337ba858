"""Build logs: append-only chunks per attempt, readable from any offset while the build runs.

Offsets count characters. A chunk holds at most `MAX_CHUNK_CHARS`, and a read asks the database
only for the chunks that overlap the range it returns, so reading a page costs the same whatever
the log's length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.events.announce import announce_log_append
from app.models import BuildLogChunk

MAX_CHUNK_CHARS = 64 * 1024
# Chunks read per query when a whole log is streamed: a few MB at most in memory.
STREAM_BATCH_CHUNKS = 32


@dataclass(frozen=True)
class LogSlice:
    offset: int
    next_offset: int
    content: str


def _of_attempt(build_id: int, attempt: int) -> tuple[ColumnElement[bool], ...]:
    return (BuildLogChunk.build_id == build_id, BuildLogChunk.attempt == attempt)


def log_length(session: Session, build_id: int, attempt: int) -> int:
    last = session.execute(
        select(BuildLogChunk.offset, func.length(BuildLogChunk.content))
        .where(*_of_attempt(build_id, attempt))
        .order_by(BuildLogChunk.offset.desc())
        .limit(1)
    ).first()
    return 0 if last is None else int(last[0]) + int(last[1])


def split_into_chunks(text: str) -> list[str]:
    return [text[start : start + MAX_CHUNK_CHARS] for start in range(0, len(text), MAX_CHUNK_CHARS)]


def append(session: Session, build_id: int, attempt: int, text: str) -> int:
    """Appends `text` to the attempt's log and returns the new length. One writer per attempt
    (the build's worker); the unique (build, attempt, offset) key rejects a second writer."""
    offset = log_length(session, build_id, attempt)
    for piece in split_into_chunks(text):
        session.add(BuildLogChunk(build_id=build_id, attempt=attempt, offset=offset, content=piece))
        offset += len(piece)
    session.flush()
    if text:
        announce_log_append(session, build_id, attempt, offset)
    return offset


def read(
    session: Session, build_id: int, attempt: int, offset: int = 0, limit: int = 1_000_000
) -> LogSlice:
    """Up to `limit` characters of the log starting at character `offset`."""
    # Offsets are bigints: an offset near the top of the range must not push the end past it.
    end = min(offset + limit, 2**63 - 1)
    # The chunk the range starts in (the last one starting at or before it), then the chunks
    # starting inside the range. Chunks are read whole and cut here: cutting them in SQL costs
    # more than reading them (each would be decompressed and counted), and none is longer than
    # MAX_CHUNK_CHARS, so a read holds at most the page and two chunks.
    first = session.execute(
        select(BuildLogChunk.offset, BuildLogChunk.content)
        .where(*_of_attempt(build_id, attempt), BuildLogChunk.offset <= offset)
        .order_by(BuildLogChunk.offset.desc())
        .limit(1)
    ).all()
    rest = session.execute(
        select(BuildLogChunk.offset, BuildLogChunk.content)
        .where(
            *_of_attempt(build_id, attempt),
            BuildLogChunk.offset > offset,
            BuildLogChunk.offset < end,
        )
        .order_by(BuildLogChunk.offset)
    ).all()
    pieces: list[str] = []
    position = offset
    for chunk_offset, content in [*first, *rest]:
        if chunk_offset > position:
            break  # a gap cannot happen with one writer; never return text past one
        content = content[position - chunk_offset : end - chunk_offset]
        if content:
            pieces.append(content)
            position += len(content)
    return LogSlice(offset=offset, next_offset=position, content="".join(pieces))


def iter_text(session_factory: Callable[[], Session], build_id: int, attempt: int) -> Iterator[str]:
    """The whole log, chunk by chunk. Each batch is read in a short session of its own, so a
    slow client holds no connection while it downloads."""
    position = -1
    while True:
        with session_factory() as session:
            rows = session.execute(
                select(BuildLogChunk.offset, BuildLogChunk.content)
                .where(*_of_attempt(build_id, attempt), BuildLogChunk.offset > position)
                .order_by(BuildLogChunk.offset)
                .limit(STREAM_BATCH_CHUNKS)
            ).all()
        for chunk_offset, content in rows:
            position = chunk_offset
            yield content
        if len(rows) < STREAM_BATCH_CHUNKS:
            return
