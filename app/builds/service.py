"""Reading builds and their logs, retrying and cancelling them, and a branch's latest green."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.builds import lifecycle, logs, queries, redispatch
from app.builds.lifecycle import CANCELLABLE, RETRYABLE
from app.builds.schemas import (
    BuildDetail,
    BuildSummary,
    ImageOut,
    LatestGreen,
    LatestGreenImage,
    LogPage,
    PushOut,
    SupersededBy,
)
from app.config import Settings
from app.errors import BadRequest, ErrorCode, InvalidTransition, NotFound
from app.images.references import pull_reference
from app.images.roles import role_commands, role_stop_signals
from app.models import Build, BuildStatus, Push
from app.models.base import utcnow
from app.repos import service as repos


def get(session: Session, build_id: int) -> Build:
    build = session.get(Build, build_id)
    if build is None:
        raise NotFound(
            f"There is no build {build_id}.", code=ErrorCode.BUILD_NOT_FOUND, build_id=build_id
        )
    return build


def list_builds(
    session: Session, filters: queries.BuildFilters, *, before_id: int | None, limit: int
) -> list[BuildSummary]:
    rows = queries.list_page(session, filters, before_id=before_id, limit=limit)
    branches = queries.branches_of(session, [build.id for build, _ in rows])
    return [BuildSummary.of(build, name, branches[build.id]) for build, name in rows]


def detail(session: Session, build: Build, settings: Settings) -> BuildDetail:
    pushes = queries.pushes_of(session, build.id)
    branches = list(dict.fromkeys(push.branch for push in pushes if push.branch))
    repository = queries.repository_name(session, build.repository_id)
    summary = BuildSummary.of(build, repository, branches)
    superseded_by = None
    if build.superseded_by_push_id is not None:
        push = session.get(Push, build.superseded_by_push_id)
        if push is not None:
            superseded_by = SupersededBy(push_id=push.id, sha=push.after_sha, branch=push.branch)
    image = queries.image_of(session, build.id)
    return BuildDetail(
        **summary.model_dump(),
        error=build.error,
        cancel_reason=build.cancel_reason,
        superseded_by=superseded_by,
        heartbeat_at=build.heartbeat_at,
        quorum_deadline_at=build.quorum_deadline_at,
        pushes=[PushOut.of(push) for push in pushes],
        image=ImageOut.of(image, settings.proxy_host) if image else None,
    )


def retry(session: Session, build: Build, settings: Settings) -> Build:
    """A new attempt of a failed, errored or cancelled build, queued for a worker. A build that
    has been queued for longer than `queued_job_timeout_seconds` has its job sent again (the
    broker may have lost it)."""
    if build.status == BuildStatus.QUEUED:
        now = utcnow()
        waited = (now - redispatch.waiting_since(build)).total_seconds()
        bound = settings.queued_job_timeout_seconds
        if waited < bound:
            raise InvalidTransition(
                f"Build {build.id} has been queued for {waited:.0f}s; a queued build's job can "
                f"be sent again once it has waited {bound:.0f}s.",
                build_id=build.id,
                status=build.status,
            )
        if lifecycle.redispatch(session, build.id, attempt=build.attempt, at=now):
            session.refresh(build)
            return build
    if not lifecycle.retry(session, build.id, attempt=build.attempt):
        raise _refused(session, build, "retried", RETRYABLE)
    session.refresh(build)
    return build


def redispatch_lost(session: Session, settings: Settings) -> list[int]:
    """Sends again, now, the jobs of overdue queued builds that the broker lost."""
    return redispatch.redispatch_lost(session, settings)


def cancel(session: Session, build: Build, cancelled_by: str) -> Build:
    if not lifecycle.cancel(session, build.id, reason=f"Cancelled by {cancelled_by}"):
        raise _refused(session, build, "cancelled", CANCELLABLE)
    return build


def _refused(
    session: Session, build: Build, verb: str, allowed: frozenset[BuildStatus]
) -> InvalidTransition:
    session.refresh(build)
    return InvalidTransition(
        f"Build {build.id} is {build.status}; only a build that is "
        f"{' or '.join(sorted(allowed))} can be {verb}.",
        build_id=build.id,
        status=build.status,
    )


@dataclass(frozen=True)
class LogSnapshot:
    build_status: BuildStatus
    current_attempt: int
    page: LogPage


def check_attempt(build: Build, attempt: int) -> None:
    if not 1 <= attempt <= build.attempt:
        raise BadRequest(
            f"Build {build.id} has attempts 1 to {build.attempt}.",
            code=ErrorCode.INVALID_ATTEMPT,
            attempt=attempt,
            attempts=build.attempt,
        )


def read_log(
    session: Session, build: Build, *, attempt: int | None, offset: int, limit: int
) -> LogSnapshot:
    """A piece of one attempt's log. `build` must be freshly loaded: its status is read before
    the text, so if the attempt was over then, nothing is appended after what this returns."""
    current = build.attempt
    wanted = current if attempt is None else attempt
    check_attempt(build, wanted)
    status = BuildStatus(build.status)
    attempt_over = status.is_final or wanted < current
    piece = logs.read(session, build.id, wanted, offset=offset, limit=limit)
    # A read shorter than asked for reached the end of the stored log (chunks are contiguous).
    reached_end = len(piece.content) < limit
    complete = attempt_over and (
        reached_end or piece.next_offset >= logs.log_length(session, build.id, wanted)
    )
    page = LogPage(
        build_id=build.id,
        attempt=wanted,
        offset=piece.offset,
        next_offset=piece.next_offset,
        content=piece.content,
        complete=complete,
    )
    return LogSnapshot(build_status=status, current_attempt=current, page=page)


def latest_green(session: Session, full_name: str, branch: str, settings: Settings) -> LatestGreen:
    found = queries.latest_green_by_name(session, full_name, branch)
    if found is not None:
        name, head = found.repository, found.head
    else:
        repository = repos.get(session, full_name)  # another case of the name, or a 404
        name = repository.full_name
        head = queries.latest_green_or_deletion(session, repository.id, branch)
    if head is not None and head.deleted:
        raise NotFound(
            f"Branch {branch} of {name} was deleted (push {head.push_id}) "
            "and has no green build since.",
            code=ErrorCode.BRANCH_DELETED,
            repository=name,
            branch=branch,
            push_id=head.push_id,
        )
    if head is None or head.build_id is None or head.sha is None:
        raise NotFound(
            f"Branch {branch} of {name} has no succeeded build.",
            code=ErrorCode.NO_GREEN_BUILD,
            repository=name,
            branch=branch,
        )
    image = None
    if head.image_name and head.image_digest and head.image_tag is not None:
        reference = pull_reference(settings.proxy_host, head.image_name, head.image_digest)
        image = LatestGreenImage(
            name=head.image_name,
            tag=head.image_tag,
            digest=head.image_digest,
            reference=reference,
        )
    return LatestGreen(
        repository=name,
        branch=branch,
        sha=head.sha,
        build_id=head.build_id,
        push_id=head.push_id,
        finished_at=head.finished_at,
        image=image,
        roles=role_commands(head.roles),
        stop_signals=role_stop_signals(head.roles),
    )
