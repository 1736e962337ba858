"""HTTP endpoints for builds: list, detail, logs (paged and live), retry, cancel, latest green."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.deps import AppSettings, DbSession, ReadAccess, WriteToken
from app.api.pagination import Page, decode_cursor, page_of, page_size
from app.api.params import MAX_ATTEMPT, MAX_OFFSET, BuildId, Moment
from app.api.responses import errors
from app.builds import logs, service, stream
from app.builds.queries import BuildFilters
from app.builds.schemas import (
    BuildDetail,
    BuildSummary,
    LatestGreen,
    LogPage,
    RedispatchResult,
)
from app.db import get_session_factory
from app.errors import BadRequest, ErrorCode
from app.models import BuildStatus
from app.repos import service as repos
from app.repos.schemas import FULL_NAME_PATTERN

router = APIRouter(tags=["builds"])

SHA_PATTERN = r"^[0-9a-fA-F]{7,40}$"
MAX_LOG_CHARS = 1_000_000


@router.get(
    "/builds",
    responses=errors(
        ErrorCode.INVALID_LIMIT,
        ErrorCode.INVALID_CURSOR,
        ErrorCode.INVALID_FILTER,
        ErrorCode.REPOSITORY_NOT_FOUND,
    ),
)
def list_builds(
    session: DbSession,
    settings: AppSettings,
    _access: ReadAccess,
    repository: Annotated[
        str | None, Query(pattern=FULL_NAME_PATTERN, description="owner/name")
    ] = None,
    branch: Annotated[
        str | None, Query(min_length=1, description="builds pushed to this branch")
    ] = None,
    sha: Annotated[
        str | None, Query(pattern=SHA_PATTERN, description="a full SHA or a prefix of 7+")
    ] = None,
    status: Annotated[list[BuildStatus] | None, Query(description="repeatable")] = None,
    since: Annotated[Moment | None, Query(description="queued at or after (ISO 8601)")] = None,
    until: Annotated[Moment | None, Query(description="queued before (ISO 8601)")] = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Page[BuildSummary]:
    """Builds, newest first. `next_cursor` continues the list where this page ended."""
    size = page_size(limit, settings)
    if since is not None and until is not None and since >= until:
        raise BadRequest(
            "since must be before until.", code=ErrorCode.INVALID_FILTER, parameter="since"
        )
    filters = BuildFilters(
        repository_id=repos.get(session, repository).id if repository else None,
        branch=branch,
        sha=sha.lower() if sha else None,
        statuses=frozenset(status or ()),
        queued_since=since,
        queued_until=until,
    )
    before_id = int(decode_cursor(cursor, int)) if cursor else None
    items = service.list_builds(session, filters, before_id=before_id, limit=size + 1)
    return page_of(items, size, lambda build: build.id)


# Before the /builds/{build_id} routes, so that `redispatch` is never read as a build id.
@router.post("/builds/redispatch")
def redispatch_lost_builds(
    session: DbSession, settings: AppSettings, _token: WriteToken
) -> RedispatchResult:
    """Sends again, now, the jobs of builds queued for longer than
    `CARTRIDGE_QUEUED_JOB_TIMEOUT_SECONDS` whose job the broker no longer holds (the periodic
    job does the same every `CARTRIDGE_REDISPATCH_INTERVAL_SECONDS`)."""
    return RedispatchResult(build_ids=service.redispatch_lost(session, settings))


@router.get("/builds/{build_id}", responses=errors(ErrorCode.BUILD_NOT_FOUND))
def get_build(
    build_id: BuildId, session: DbSession, settings: AppSettings, _access: ReadAccess
) -> BuildDetail:
    return service.detail(session, service.get(session, build_id), settings)


@router.get(
    "/builds/{build_id}/log", responses=errors(ErrorCode.BUILD_NOT_FOUND, ErrorCode.INVALID_ATTEMPT)
)
def get_build_log(
    build_id: BuildId,
    session: DbSession,
    _access: ReadAccess,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    attempt: Annotated[
        int | None, Query(ge=1, le=MAX_ATTEMPT, description="default: the latest")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_CHARS)] = MAX_LOG_CHARS,
) -> LogPage:
    """Log text from character `offset`; read again from `next_offset` for more. `complete`
    says the attempt is over and nothing lies past `next_offset`."""
    build = service.get(session, build_id)
    return service.read_log(session, build, attempt=attempt, offset=offset, limit=limit).page


@router.get(
    "/builds/{build_id}/log.txt",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "The whole stored log"},
        **errors(ErrorCode.BUILD_NOT_FOUND, ErrorCode.INVALID_ATTEMPT),
    },
)
def get_build_log_text(
    build_id: BuildId,
    session: DbSession,
    _access: ReadAccess,
    attempt: Annotated[
        int | None, Query(ge=1, le=MAX_ATTEMPT, description="default: the latest")
    ] = None,
) -> StreamingResponse:
    """The attempt's whole stored log as plain text, streamed a few chunks at a time (what is
    stored so far, if the build is still running)."""
    build = service.get(session, build_id)
    wanted = build.attempt if attempt is None else attempt
    service.check_attempt(build, wanted)
    return StreamingResponse(
        logs.iter_text(get_session_factory(), build.id, wanted),
        media_type="text/plain; charset=utf-8",
        headers={"X-Cartridge-Attempt": str(wanted)},
    )


def _stream_start(
    build_id: BuildId,
    session: DbSession,
    _access: ReadAccess,
    offset: Annotated[int | None, Query(ge=0, le=MAX_OFFSET)] = None,
    attempt: Annotated[
        int | None, Query(ge=1, le=MAX_ATTEMPT, description="default: follow the build")
    ] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> stream.StreamStart:
    build = service.get(session, build_id)
    follow_retries = attempt is None
    # A reconnecting EventSource repeats the original URL: the event id it saw last is newer.
    if last_event_id:
        attempt, offset = stream.resume_point(last_event_id)
    if attempt is not None:
        service.check_attempt(build, attempt)
    return stream.StreamStart(
        build_id=build.id, attempt=attempt, offset=offset or 0, follow_retries=follow_retries
    )


@router.get(
    "/builds/{build_id}/log/stream",
    response_class=EventSourceResponse,
    responses=errors(
        ErrorCode.BUILD_NOT_FOUND, ErrorCode.INVALID_ATTEMPT, ErrorCode.INVALID_LAST_EVENT_ID
    ),
)
async def stream_build_log(
    start: Annotated[stream.StreamStart, Depends(_stream_start)],
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: `log` events with new text (`id` is `attempt:offset`, so a client
    reconnecting with Last-Event-ID resumes), `attempt` when a retry starts a new attempt, and a
    final `end` event with the build's status once it is final."""
    async for event in stream.log_events(start):
        yield event


@router.post(
    "/builds/{build_id}/retry",
    responses=errors(ErrorCode.BUILD_NOT_FOUND, ErrorCode.INVALID_TRANSITION),
)
def retry_build(
    build_id: BuildId, session: DbSession, settings: AppSettings, _token: WriteToken
) -> BuildDetail:
    build = service.retry(session, service.get(session, build_id), settings)
    return service.detail(session, build, settings)


@router.post(
    "/builds/{build_id}/cancel",
    responses=errors(ErrorCode.BUILD_NOT_FOUND, ErrorCode.INVALID_TRANSITION),
)
def cancel_build(
    build_id: BuildId, session: DbSession, settings: AppSettings, token: WriteToken
) -> BuildDetail:
    build = service.cancel(session, service.get(session, build_id), token.name)
    return service.detail(session, build, settings)


@router.get(
    "/repos/{owner}/{name}/branches/{branch:path}/latest-green",
    tags=["repositories"],
    responses=errors(
        ErrorCode.REPOSITORY_NOT_FOUND, ErrorCode.NO_GREEN_BUILD, ErrorCode.BRANCH_DELETED
    ),
)
def latest_green(
    owner: str,
    name: str,
    branch: str,
    session: DbSession,
    settings: AppSettings,
    _access: ReadAccess,
) -> LatestGreen:
    """The newest push on the branch whose build succeeded (push order, not finish order),
    with its image by digest through the caching proxy and its roles."""
    return service.latest_green(session, f"{owner}/{name}", branch, settings)
