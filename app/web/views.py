"""What each page shows, gathered from the feature packages' services and queries."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.builds import logs
from app.builds import queries as build_queries
from app.builds import service as builds
from app.builds.queries import BuildFilters
from app.builds.schemas import BuildDetail, BuildSummary, LatestGreen
from app.config import Settings
from app.errors import NotFound
from app.images import service as images
from app.images.schemas import ImageOut
from app.models import Build, BuildLogChunk, BuildStatus, Push, Repository, StatusPost
from app.registries import queries as registry_queries
from app.registries.proxy import ProxyConfigInvalid, render, upstreams
from app.registries.schemas import RegistryOut
from app.repos import queries as repo_queries
from app.repos import service as repos
from app.statuses import queries as status_queries
from app.webhooks import queries as webhook_queries

# The log viewer starts with at most this much of the end of a log; the rest is a click away.
TAIL_CHARS = 256 * 1024
# Steps are read from the first part of the log, where Cartridge writes its step lines.
STEP_SCAN_CHARS = 4 * 1024 * 1024
STEP_START = re.compile(r"^==> (?P<name>[a-z]+)(?:: (?P<detail>.*))?$")
STEP_END = re.compile(r"^==> (?P<name>[a-z]+) (?P<seconds>\d+(?:\.\d+)?)s(?::.*)?$")


@dataclass(frozen=True)
class BuildRow:
    build: BuildSummary
    subject: str
    pusher: str | None


def build_rows(
    session: Session, filters: BuildFilters, *, before_id: int | None, limit: int
) -> list[BuildRow]:
    summaries = builds.list_builds(session, filters, before_id=before_id, limit=limit)
    pushes = build_queries.latest_pushes_of(session, [summary.id for summary in summaries])
    return [_row(summary, pushes.get(summary.id)) for summary in summaries]


def _row(summary: BuildSummary, push: Push | None) -> BuildRow:
    return BuildRow(
        build=summary,
        subject=(push.head_commit_message or "") if push else "",
        pusher=push.pusher if push else None,
    )


@dataclass(frozen=True)
class RepositoryCard:
    repository: Repository
    latest_green: LatestGreen | None


@dataclass(frozen=True)
class Home:
    repositories: list[RepositoryCard]
    active: list[BuildRow]
    failures: list[BuildRow]


def home(session: Session, settings: Settings) -> Home:
    cards = [
        RepositoryCard(repository, _latest_green(session, repository, None, settings))
        for repository in repo_queries.list_page(session, after=None, limit=100)
    ]
    active = BuildFilters(statuses=frozenset({BuildStatus.RUNNING, BuildStatus.QUEUED}))
    failed = BuildFilters(statuses=frozenset({BuildStatus.FAILED, BuildStatus.ERRORED}))
    return Home(
        repositories=cards,
        active=build_rows(session, active, before_id=None, limit=50),
        failures=build_rows(session, failed, before_id=None, limit=10),
    )


def _latest_green(
    session: Session, repository: Repository, branch: str | None, settings: Settings
) -> LatestGreen | None:
    try:
        return builds.latest_green(
            session, repository.full_name, branch or repository.default_branch, settings
        )
    except NotFound:
        return None


@dataclass(frozen=True)
class BranchLine:
    name: str
    last_push: Push
    last_build: BuildSummary | None
    latest_green: LatestGreen | None


@dataclass(frozen=True)
class RepositoryPage:
    repository: Repository
    branches: list[BranchLine]
    builds: list[BuildRow]
    last_reconciled_at: Any


def repository_page(session: Session, settings: Settings, full_name: str) -> RepositoryPage:
    repository = repos.get(session, full_name)
    heads = build_queries.branch_heads(session, repository.id, limit=100)
    summaries = {
        push.build_id: _summary(session, push.build_id)
        for push in heads
        if push.build_id is not None
    }
    branches = [
        BranchLine(
            name=push.branch or "",
            last_push=push,
            last_build=summaries.get(push.build_id) if push.build_id is not None else None,
            latest_green=_latest_green(session, repository, push.branch, settings),
        )
        for push in heads
    ]
    return RepositoryPage(
        repository=repository,
        branches=branches,
        builds=build_rows(
            session, BuildFilters(repository_id=repository.id), before_id=None, limit=20
        ),
        # Recorded by the reconciler, on installations that have it.
        last_reconciled_at=getattr(repository, "last_reconciled_at", None),
    )


def _summary(session: Session, build_id: int) -> BuildSummary:
    build = builds.get(session, build_id)
    branches = build_queries.branches_of(session, [build_id])[build_id]
    repository = build_queries.repository_name(session, build.repository_id)
    return BuildSummary.of(build, repository, branches)


@dataclass(frozen=True)
class Step:
    name: str
    detail: str
    seconds: float | None
    failed: bool


@dataclass(frozen=True)
class LogStart:
    """Where the log viewer starts: the attempt, the offset of the text it shows first (the
    tail of a big log), how many lines lie before it, and how long the log is now."""

    attempt: int
    offset: int
    lines_before: int
    length: int
    complete: bool


@dataclass(frozen=True)
class BuildPage:
    build: BuildDetail
    subject: str
    pusher: str | None
    attempt: int
    steps: list[Step]
    statuses: list[StatusPost]
    log: LogStart
    superseded_by_build_id: int | None
    repository_url: str
    extra: dict[str, Any] = field(default_factory=dict)


def build_page(
    session: Session, settings: Settings, build_id: int, attempt: int | None
) -> BuildPage:
    build = builds.get(session, build_id)
    detail = builds.detail(session, build, settings)
    wanted = attempt or build.attempt
    builds.check_attempt(build, wanted)
    pushes = build_queries.latest_pushes_of(session, [build.id])
    push = pushes.get(build.id)
    superseded_by = None
    if detail.superseded_by is not None:
        superseding = session.get(Push, detail.superseded_by.push_id)
        superseded_by = superseding.build_id if superseding else None
    return BuildPage(
        build=detail,
        subject=(push.head_commit_message or "") if push else "",
        pusher=push.pusher if push else None,
        attempt=wanted,
        steps=steps_of(session, build, wanted),
        statuses=[
            post
            for post in status_queries.posts_for_build(session, build.id)
            if post.attempt == wanted
        ],
        log=log_start(session, build, wanted),
        superseded_by_build_id=superseded_by,
        repository_url=f"https://github.com/{detail.repository}",
    )


def steps_of(session: Session, build: Build, attempt: int) -> list[Step]:
    """The pipeline steps from Cartridge's own log lines (`==> fetch: ...`, `==> fetch 0.42s`);
    a step that started and never ended in a failed or errored build is the failing one."""
    text = logs.read(session, build.id, attempt, offset=0, limit=STEP_SCAN_CHARS).content
    steps: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if not line.startswith("==> "):
            continue
        end = STEP_END.match(line)
        if end and end["name"] in steps:
            steps[end["name"]]["seconds"] = float(end["seconds"])
            continue
        if end and end["name"] == "replicas":
            detail = line.split(": ", 1)[-1]
            steps["replicas"] = {"detail": detail, "seconds": float(end["seconds"])}
            continue
        start = STEP_START.match(line)
        if start and start["name"] not in steps and start["name"] not in _NOT_STEPS:
            steps[start["name"]] = {"detail": start["detail"] or "", "seconds": None}
    status = BuildStatus(build.status)
    broke = status in {BuildStatus.FAILED, BuildStatus.ERRORED} and attempt == build.attempt
    return [
        Step(
            name=name,
            detail=values["detail"],
            seconds=values["seconds"],
            failed=broke and values["seconds"] is None,
        )
        for name, values in steps.items()
    ]


_NOT_STEPS = frozenset({"failed", "errored", "succeeded", "stopped", "cancelled"})


def log_start(session: Session, build: Build, attempt: int) -> LogStart:
    length = logs.log_length(session, build.id, attempt)
    offset = 0
    if length > TAIL_CHARS:
        # The first chunk of the tail: a chunk boundary, so the lines before it are counted
        # in the database without reading their text.
        offset = (
            session.scalar(
                select(func.min(BuildLogChunk.offset)).where(
                    BuildLogChunk.build_id == build.id,
                    BuildLogChunk.attempt == attempt,
                    BuildLogChunk.offset >= length - TAIL_CHARS,
                )
            )
            or 0
        )
    lines_before = 0
    if offset:
        content = BuildLogChunk.content
        newlines = func.length(content) - func.length(func.replace(content, "\n", ""))
        lines_before = int(
            session.scalar(
                select(func.coalesce(func.sum(newlines), 0)).where(
                    BuildLogChunk.build_id == build.id,
                    BuildLogChunk.attempt == attempt,
                    BuildLogChunk.offset < offset,
                )
            )
            or 0
        )
    status = BuildStatus(build.status)
    return LogStart(
        attempt=attempt,
        offset=offset,
        lines_before=lines_before,
        length=length,
        complete=status.is_final or attempt < build.attempt,
    )


def image_page(session: Session, digest: str) -> ImageOut:
    return images.get_by_digest(session, digest)


@dataclass(frozen=True)
class RegistriesPage:
    registries: list[RegistryOut]
    proxy_config: str
    proxy_error: str | None


def registries_page(session: Session, settings: Settings) -> RegistriesPage:
    counts = registry_queries.missing_counts(session)
    registries = [
        RegistryOut.model_validate(registry).model_copy(
            update={"missing_images": counts.get(registry.id, 0)}
        )
        for registry in registry_queries.list_registries(session)
    ]
    try:
        config, error = render(upstreams(session, settings), settings), None
    except ProxyConfigInvalid as exc:
        config, error = "", exc.message
    return RegistriesPage(registries=registries, proxy_config=config, proxy_error=error)


@dataclass(frozen=True)
class DeliveryRow:
    delivery: Any
    build_id: int | None


def deliveries(
    session: Session,
    *,
    event: str | None,
    outcome: str | None,
    repository: str | None,
    before_id: int | None,
    limit: int,
) -> list[DeliveryRow]:
    rows = webhook_queries.recent_deliveries(
        session,
        event=event,
        outcome=outcome,
        repository=repository,
        before_id=before_id,
        limit=limit,
    )
    return [DeliveryRow(delivery, build_id) for delivery, build_id in rows]
