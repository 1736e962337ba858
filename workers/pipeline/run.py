"""The pipeline steps of one build attempt, in order: fetch, validate, build, push and verify."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

from app.config import Settings
from workers.pipeline.assemble import ImageSource, assemble_image
from workers.pipeline.buildlog import BuildLog
from workers.pipeline.control import BuildControl
from workers.pipeline.fetch import fetch_commit, redact_url
from workers.pipeline.layer_cache import pull_cache_sources
from workers.pipeline.limits import BuildLimits
from workers.pipeline.publish import PublishedImage, push_and_verify
from workers.pipeline.roles import stored_roles


@dataclass(frozen=True)
class BuildJob:
    build_id: int
    attempt: int
    sha: str
    repository: str  # owner/name on GitHub
    clone_url: str
    image_name: str
    base_image: str
    limits: BuildLimits
    # The registry replicas' addresses, kept from the build network with the rest of the
    # control plane.
    replica_urls: tuple[str, ...] = ()
    # `name@digest` of previous images of the repository to reuse layers of (layer_cache.py).
    cache_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuiltImage:
    published: PublishedImage
    # container/roles.json as stored with the image (see workers.pipeline.roles).
    roles: dict[str, Any]
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
    cache_from: list[str] = []
    if job.cache_sources:
        with log.step("cache", ", ".join(job.cache_sources)):
            cache_from = pull_cache_sources(
                api, settings.engine_registry_url, list(job.cache_sources), log=log, control=control
            )
    assembled = assemble_image(
        ImageSource(
            checkout=checkout,
            revision=job.sha,
            source=source,
            repository=job.repository,
            base_image=job.base_image,
            tag=tag,
            cache_from=tuple(cache_from),
            limits=job.limits,
            replica_urls=job.replica_urls,
        ),
        settings,
        api=api,
        log=log,
        control=control,
        started=started,
    )
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
    return BuiltImage(
        published=published,
        roles=stored_roles(assembled.conventions.roles),
        labels=assembled.labels,
    )
