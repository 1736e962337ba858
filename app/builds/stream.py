"""The live log stream: server-sent events with new log text until the build is final.

A stream reads the database when the process's event hub says the build changed or its log grew
(PostgreSQL `LISTEN`), or at a short interval without notifications (SQLite). Streams at the same
point of the same log share one read, so a hundred viewers of a build cost one query per flush.
Each read runs in the threadpool with its own short session, so a stream never blocks the event
loop nor holds a connection while it waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

from fastapi.sse import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.api.params import MAX_ATTEMPT, MAX_OFFSET
from app.builds import service
from app.db import get_session_factory
from app.errors import BadRequest, ErrorCode
from app.events.hub import Hub, Subscription, get_hub
from app.models import Build

# Big enough to catch up on a long log quickly, small enough to keep each event modest.
EVENT_CHARS = 64_000


@dataclass(frozen=True)
class StreamStart:
    build_id: int
    attempt: int | None  # None: the latest
    offset: int
    # Whether a retry (or a lease expiry) moves the stream on to the new attempt.
    follow_retries: bool


def resume_point(last_event_id: str) -> tuple[int, int]:
    """The (attempt, offset) encoded in an event id, as a reconnecting client sends it back."""
    attempt, _, offset = last_event_id.partition(":")
    try:
        parsed = int(attempt), int(offset)
    except ValueError as exc:
        raise BadRequest(
            "Last-Event-ID is not one this stream sent.", code=ErrorCode.INVALID_LAST_EVENT_ID
        ) from exc
    if not (1 <= parsed[0] <= MAX_ATTEMPT and 0 <= parsed[1] <= MAX_OFFSET):
        raise BadRequest(
            "Last-Event-ID is not one this stream sent.", code=ErrorCode.INVALID_LAST_EVENT_ID
        )
    return parsed


def _poll(build_id: int, attempt: int | None, offset: int) -> service.LogSnapshot | None:
    with get_session_factory()() as session:
        build = session.get(Build, build_id)
        if build is None:
            return None
        return service.read_log(session, build, attempt=attempt, offset=offset, limit=EVENT_CHARS)


async def log_events(start: StreamStart) -> AsyncIterator[ServerSentEvent]:
    hub = get_hub()
    with hub.subscribe(start.build_id) as changes:
        async for event in _events(hub, changes, start):
            yield event


async def _events(
    hub: Hub, changes: Subscription, start: StreamStart
) -> AsyncIterator[ServerSentEvent]:
    attempt, offset = start.attempt, start.offset
    while True:
        read = partial(run_in_threadpool, _poll, start.build_id, attempt, offset)
        snapshot = await hub.shared(("log", start.build_id, attempt, offset), read, changes)
        if snapshot is None:
            yield ServerSentEvent(event="gone", data={"build_id": start.build_id})
            return
        page = snapshot.page
        attempt = page.attempt
        if page.content:
            offset = page.next_offset
            yield ServerSentEvent(
                event="log", id=f"{attempt}:{offset}", data=page.model_dump(exclude={"complete"})
            )
            continue
        if page.complete:
            if start.follow_retries and snapshot.current_attempt > attempt:
                attempt, offset = snapshot.current_attempt, 0
                yield ServerSentEvent(event="attempt", id=f"{attempt}:0", data={"attempt": attempt})
                continue
            yield ServerSentEvent(
                event="end",
                id=f"{attempt}:{offset}",
                data={
                    "build_id": start.build_id,
                    "status": snapshot.build_status.value,
                    "attempt": attempt,
                    "next_offset": offset,
                },
            )
            return
        await changes.wait()
