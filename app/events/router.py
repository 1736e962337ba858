"""HTTP endpoint of the live event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.api.deps import DbSession, ReadAccess
from app.api.responses import errors
from app.errors import ErrorCode
from app.events import stream
from app.events.cursor import EventCursor
from app.repos import service as repos
from app.repos.schemas import FULL_NAME_PATTERN

router = APIRouter(tags=["events"])


async def _stream_start(
    session: DbSession,
    _access: ReadAccess,
    repo: Annotated[
        str | None, Query(pattern=FULL_NAME_PATTERN, description="owner/name: only its builds")
    ] = None,
    branch: Annotated[
        str | None, Query(min_length=1, description="only builds pushed to this branch")
    ] = None,
    after: Annotated[
        str | None, Query(description="replay events after this event id (`Last-Event-ID`)")
    ] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> tuple[stream.EventFilters, EventCursor]:
    repository_id = None
    if repo is not None:
        repository_id = (await run_in_threadpool(repos.get, session, repo)).id
    # A reconnecting EventSource repeats the original URL: the id it saw last is newer.
    cursor = await run_in_threadpool(stream.start_cursor, last_event_id or after)
    return stream.EventFilters(repository_id=repository_id, branch=branch), cursor


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses=errors(ErrorCode.REPOSITORY_NOT_FOUND, ErrorCode.INVALID_LAST_EVENT_ID),
)
async def events(
    start: Annotated[tuple[stream.EventFilters, EventCursor], Depends(_stream_start)],
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: `ready` (the stream is live), `build` (a build reached a status),
    `log` (an attempt's log grew to `length` characters), `latest_green` (a branch's latest
    green build is now this one). Reconnect with `Last-Event-ID` (or `?after=`) to replay what
    was missed; without either the stream starts now."""
    filters, cursor = start
    async for event in stream.events(filters, cursor):
        yield event
