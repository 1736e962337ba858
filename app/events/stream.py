"""`GET /api/v1/events`: build status changes, log progress and latest-green changes as
server-sent events.

A stream first replays what happened after the client's cursor (`Last-Event-ID` or `?after=`),
then waits on the process's event hub and reads again when something changed. Each event of a
batch is sent without an id except the batch's last, which carries the cursor after the whole
batch: a client that reconnects gets at least every event once (a batch cut short is sent again,
and every event says a state, so a repeat changes nothing).

Events:
- `ready`: the stream is live; its id is the cursor to resume from.
- `build`: a build reached a status (`queued`, `running`, ..., on an attempt).
- `log`: a build attempt's log is now `length` characters long (read the text from the log API).
- `latest_green`: a branch's latest green build changed to this one (the same body as
  `GET /api/v1/repos/{owner}/{name}/branches/{branch}/latest-green`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi.sse import ServerSentEvent
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.builds import queries as build_queries
from app.builds import service as builds
from app.config import get_settings
from app.db import get_session_factory
from app.errors import NotFound
from app.events import queries
from app.events.cursor import EventCursor, SequenceCursor
from app.events.hub import get_hub
from app.models import BuildStatus

BATCH = 500


@dataclass(frozen=True)
class EventFilters:
    repository_id: int | None = None
    branch: str | None = None


@dataclass
class Batch:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    full: bool = False


def start_cursor(after: str | None) -> EventCursor:
    if after is not None:
        return EventCursor.parse(after)
    with get_session_factory()() as session:
        events, chunks = queries.last_ids(session)
    return EventCursor(SequenceCursor(events), SequenceCursor(chunks))


async def events(filters: EventFilters, cursor: EventCursor) -> AsyncIterator[ServerSentEvent]:
    hub = get_hub()
    with hub.subscribe() as changes:
        yield ServerSentEvent(event="ready", id=str(cursor), data={"cursor": str(cursor)})
        while True:
            batch = await run_in_threadpool(read_batch, filters, cursor)
            for index, (name, data) in enumerate(batch.events):
                last = index == len(batch.events) - 1
                yield ServerSentEvent(event=name, data=data, id=str(cursor) if last else None)
            if not batch.full:
                await changes.wait()


def read_batch(filters: EventFilters, cursor: EventCursor) -> Batch:
    """What happened after `cursor`, matching `filters`; moves `cursor` past it."""
    with get_session_factory()() as session:
        changes = queries.build_events_after(session, cursor.events, BATCH)
        chunks = queries.log_chunks_after(session, cursor.logs, BATCH)
        cursor.events.saw([row.id for row in changes])
        cursor.logs.saw([row.id for row in chunks])
        batch = Batch(full=len(changes) == BATCH or len(chunks) == BATCH)
        if filters.repository_id is not None:
            changes = [row for row in changes if row.repository_id == filters.repository_id]
            chunks = [row for row in chunks if row.repository_id == filters.repository_id]
        build_ids = [row.build_id for row in changes] + [row.build_id for row in chunks]
        branches = build_queries.branches_of(session, sorted(set(build_ids)))
        if filters.branch is not None:
            changes = [row for row in changes if filters.branch in branches[row.build_id]]
            chunks = [row for row in chunks if filters.branch in branches[row.build_id]]
        facts = queries.build_facts(session, [row.build_id for row in changes])
        for row in changes:
            repository, sha = facts.get(row.build_id, ("", ""))
            batch.events.append(
                (
                    "build",
                    {
                        "build_id": row.build_id,
                        "repository": repository,
                        "sha": sha,
                        "status": row.status,
                        "attempt": row.attempt,
                        "branches": branches[row.build_id],
                    },
                )
            )
            if row.status == BuildStatus.SUCCEEDED:
                batch.events.extend(
                    _latest_green_changes(session, row.build_id, repository, branches, filters)
                )
        progress: dict[tuple[int, int], int] = {}
        for chunk in chunks:
            key = (chunk.build_id, chunk.attempt)
            progress[key] = max(progress.get(key, 0), int(chunk.end))
        for (build_id, attempt), length in progress.items():
            batch.events.append(
                ("log", {"build_id": build_id, "attempt": attempt, "length": length})
            )
        return batch


def _latest_green_changes(
    session: Session,
    build_id: int,
    repository: str,
    branches: dict[int, list[str]],
    filters: EventFilters,
) -> list[tuple[str, dict[str, Any]]]:
    """`latest_green` events for the build's branches whose latest green it is now."""
    found = []
    for branch in branches[build_id]:
        if filters.branch is not None and branch != filters.branch:
            continue
        try:
            green = builds.latest_green(session, repository, branch, get_settings())
        except NotFound:
            continue
        if green.build_id == build_id:
            found.append(("latest_green", green.model_dump(mode="json")))
    return found
