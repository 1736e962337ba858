"""A layer cache every build host shares: before building, the build host pulls the repository's
most relevant previous image from the registry and hands it to the builder as a cache source, so
an unchanged `container/dependencies` layer is reused on a host that never built the repository.

The most relevant image is the latest green one of the build's own branch, else of the default
branch (`cache_sources`). The classic builder then takes a step's result from the local cache only
when it belongs to the lineage of a cache source, and otherwise from the sources themselves;
both candidates are given when they differ. Nothing here can fail a build: an image that cannot be
pulled only costs the cache hit, and the log says why.

Every build host must produce the same launcher layer (`/cartridge/`, before the dependencies) for
the layers after it to match: hosts of one Debian release have the same tini-static and compile the
same shim.
"""

from __future__ import annotations

import docker
import requests
from sqlalchemy.orm import Session

from app.builds.queries import latest_green_or_deletion, pushes_of
from app.models import Build, Repository
from workers.pipeline.control import BuildControl
from workers.pipeline.steplog import StepLog


def cache_sources(session: Session, build: Build, repository: Repository) -> list[str]:
    """`name@digest` of the latest green image of the build's branch, then of the default
    branch (when it differs), for a build host to pull; empty when there is none."""
    branches = [push.branch for push in reversed(pushes_of(session, build.id)) if push.branch]
    sources: list[str] = []
    for branch in dict.fromkeys([*branches[:1], repository.default_branch]):
        head = latest_green_or_deletion(session, repository.id, branch)
        if head is None or head.deleted or head.build_id == build.id:
            continue
        if head.image_name and head.image_digest:
            source = f"{head.image_name}@{head.image_digest}"
            if source not in sources:
                sources.append(source)
    return sources


def pull_cache_sources(
    api: docker.APIClient,
    registry: str,
    sources: list[str],
    *,
    log: StepLog,
    control: BuildControl,
) -> list[str]:
    """The references of `sources` (on `registry`) present on this engine, pulling those that
    are not. A source that cannot be had is left out, with a line in the log."""
    present: list[str] = []
    for source in sources:
        control.check()
        reference = f"{registry}/{source}"
        try:
            api.inspect_image(reference)
            log.line(f"cache: {reference} (already on this host)")
            present.append(reference)
            continue
        except docker.errors.ImageNotFound:
            pass
        except (docker.errors.DockerException, requests.RequestException) as exc:
            log.line(f"cache: {reference} left out: {exc}")
            continue
        repository, _, digest = reference.partition("@")
        try:
            for event in api.pull(repository, tag=digest, stream=True, decode=True):
                if "error" in event:
                    raise docker.errors.APIError(str(event["error"]).strip())
            log.line(f"cache: {reference} (pulled)")
            present.append(reference)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            log.line(f"cache: {reference} could not be pulled, building without it: {exc}")
    return present
