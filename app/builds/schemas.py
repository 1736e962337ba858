"""Response bodies for builds, their logs and a branch's latest green build."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.images.references import pull_reference
from app.images.roles import role_commands, role_stop_signals
from app.models import Build, BuildStatus, Image, Push, PushSource


class BuildSummary(BaseModel):
    id: int
    repository: str
    sha: str
    status: BuildStatus
    attempt: int
    branches: list[str]
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    build_host: str | None

    @classmethod
    def of(cls, build: Build, repository: str, branches: list[str]) -> BuildSummary:
        return cls(
            id=build.id,
            repository=repository,
            sha=build.sha,
            status=BuildStatus(build.status),
            attempt=build.attempt,
            branches=branches,
            queued_at=build.queued_at,
            started_at=build.started_at,
            finished_at=build.finished_at,
            build_host=build.build_host,
        )


class PushOut(BaseModel):
    """A ref update that pointed at this build's commit, in received order (`id`)."""

    id: int
    ref: str
    branch: str | None
    tag: str | None
    before: str
    after: str
    forced: bool
    created: bool
    deleted: bool
    pusher: str | None
    source: PushSource = Field(
        description="webhook: GitHub delivered it; reconciler: recovered from GitHub's branch "
        "heads because no webhook told of it"
    )
    received_at: datetime

    @classmethod
    def of(cls, push: Push) -> PushOut:
        return cls(
            id=push.id,
            ref=push.ref,
            branch=push.branch,
            tag=push.tag,
            before=push.before_sha,
            after=push.after_sha,
            forced=push.forced,
            created=push.created,
            deleted=push.deleted,
            pusher=push.pusher,
            source=push.source,
            received_at=push.received_at,
        )


class SupersededBy(BaseModel):
    push_id: int
    sha: str
    branch: str | None


class ImageOut(BaseModel):
    name: str  # in the registries
    tag: str
    digest: str
    reference: str
    config_digest: str
    size: int
    roles: dict[str, str]
    stop_signals: dict[str, str]
    labels: dict[str, str]
    created_at: datetime

    @classmethod
    def of(cls, image: Image, proxy_host: str) -> ImageOut:
        return cls(
            name=image.name,
            tag=image.tag,
            digest=image.manifest_digest,
            reference=pull_reference(proxy_host, image.name, image.manifest_digest),
            config_digest=image.config_digest,
            size=image.size,
            roles=role_commands(image.roles),
            stop_signals=role_stop_signals(image.roles),
            labels=dict(image.labels),
            created_at=image.created_at,
        )


class BuildDetail(BuildSummary):
    error: str | None
    cancel_reason: str | None
    superseded_by: SupersededBy | None
    heartbeat_at: datetime | None
    # Set while a running build's image waits for the replica quorum (no worker holds it).
    quorum_deadline_at: datetime | None = None
    pushes: list[PushOut]
    image: ImageOut | None


class LogPage(BaseModel):
    build_id: int
    attempt: int
    offset: int
    next_offset: int
    content: str
    complete: bool


class LatestGreenImage(BaseModel):
    name: str  # in the registries
    tag: str
    digest: str
    reference: str


class LatestGreen(BaseModel):
    repository: str
    branch: str
    sha: str
    build_id: int
    push_id: int
    finished_at: datetime | None
    image: LatestGreenImage | None
    roles: dict[str, str]
    stop_signals: dict[str, str]


class RedispatchResult(BaseModel):
    """The queued builds whose lost job was sent again."""

    build_ids: list[int]
