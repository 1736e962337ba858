"""The pipeline steps of one build attempt, in order: fetch, validate, build, push and verify."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import docker

from app.config import Settings
from workers.pipeline.buildlog import BuildLog
from workers.pipeline.context import build_context, image_labels
from workers.pipeline.control import BuildControl
from workers.pipeline.conventions import check_repository
from workers.pipeline.fetch import fetch_commit, redact_url
from workers.pipeline.image_build import build_image, ensure_base_image
from workers.pipeline.publish import PublishedImage, push_and_verify


@dataclass(frozen=True)
class BuildJob:
    build_id: int
    attempt: int
    sha: str
    repository: str  # owner/name on GitHub
    clone_url: str
    image_name: str
    base_image: str


@dataclass(frozen=True)
class BuiltImage:
    published: PublishedImage
    roles: dict[str, str]
    labels: dict[str, str]


def run_pipeline(
    job: BuildJob,
    settings: Settings,
    *,
    api: docker.APIClient,
    log: BuildLog,
    control: BuildControl,
    started: datetime,
    root: Path,
) -> BuiltImage:
    """Runs the steps in `root`, an empty per-build directory the caller removes afterwards."""
    source = redact_url(job.clone_url)
    token = settings.git_token.get_secret_value() if settings.git_token else None
    tag = f"{settings.engine_registry_url}/{job.image_name}:{job.sha}"
    checkout = root / "checkout"
    with log.step("fetch", f"{source} at {job.sha}"):
        fetch_commit(job.clone_url, job.sha, checkout, token=token, log=log, control=control)
    control.check()
    with log.step("validate", "container/compile, container/roles.json"):
        conventions = check_repository(checkout)
        log.line(f"roles: {', '.join(sorted(conventions.roles)) or '(none)'}")
    with log.step("build", f"{tag} from {job.base_image}"):
        ensure_base_image(api, job.base_image, settings.host_name)
        labels = image_labels(
            sha=job.sha,
            source=source,
            created=started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            repository=job.repository,
            roles=conventions.roles,
        )
        context = build_context(
            checkout, job.sha, conventions, base_image=job.base_image, labels=labels
        )
        image_id = build_image(
            api,
            context,
            tag=tag,
            network=settings.build_network,
            log=log,
            control=control,
        )
        labels = api.inspect_image(image_id)["Config"].get("Labels") or labels
    control.check()
    with log.step("push", tag):
        published = push_and_verify(
            api,
            settings.registry_url,
            job.image_name,
            job.sha,
            log=log,
            control=control,
            engine_registry=settings.engine_registry_url,
        )
    return BuiltImage(published=published, roles=conventions.roles, labels=labels)
