"""The steps shared by a build host and `cartridge build`: validate a checkout against the
conventions, build its image on a Docker engine (launcher included) and run the roles' smoke
checks. What comes before (a fetch, or a developer's working tree) and after (the push) is the
caller's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import docker

from app.config import Settings
from workers.pipeline import network as build_network
from workers.pipeline.base_images import provide_base_image
from workers.pipeline.context import build_context, image_labels
from workers.pipeline.control import BuildControl
from workers.pipeline.conventions import Conventions, check_repository
from workers.pipeline.image_build import build_image
from workers.pipeline.launcher import find_launcher
from workers.pipeline.limits import BuildLimits
from workers.pipeline.smoke import run_smoke_checks
from workers.pipeline.steplog import StepLog


@dataclass(frozen=True)
class ImageSource:
    """What to build: a checkout and what its image says about where it came from."""

    checkout: Path
    revision: str  # the commit SHA; `<sha>-dirty` for a working tree with changes
    source: str  # the clone URL, without credentials
    repository: str  # owner/name on GitHub
    base_image: str
    tag: str
    # Pulled images whose layers the builder may reuse (workers/pipeline/layer_cache.py).
    cache_from: tuple[str, ...] = ()
    # The limits of every container the build runs; None: the installation's (CARTRIDGE_BUILD_*).
    limits: BuildLimits | None = None
    # The registry replicas, denied to the build with the rest of the control plane.
    replica_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class AssembledImage:
    image_id: str
    conventions: Conventions
    labels: dict[str, str]
    dockerfile: str


def assemble_image(
    image: ImageSource,
    settings: Settings,
    *,
    api: docker.APIClient,
    log: StepLog,
    control: BuildControl,
    started: datetime,
) -> AssembledImage:
    with log.step("validate", "container/compile, container/roles.json"):
        conventions = check_repository(image.checkout)
        log.line(f"roles: {', '.join(sorted(conventions.roles)) or '(none)'}")
    limits = image.limits or BuildLimits.resolve(settings, None)
    with log.step("build", f"{image.tag} from {image.base_image}"):
        provide_base_image(api, image.base_image, settings, log=log)
        network = build_network.prepare(api, settings, image.replica_urls)
        log.line(f"network: {network.describe()}")
        log.line(f"limits: {limits.describe()}")
        labels = image_labels(
            sha=image.revision,
            source=image.source,
            created=started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            repository=image.repository,
            roles=conventions.roles,
        )
        context = build_context(
            image.checkout,
            image.revision,
            conventions,
            base_image=image.base_image,
            labels=labels,
            launcher=find_launcher(settings.tini_path, settings.launcher_cache_dir),
        )
        image_id = build_image(
            api,
            context,
            tag=image.tag,
            network=network.mode,
            limits=limits,
            log=log,
            control=control,
            cache_from=list(image.cache_from),
            limit_poll_seconds=settings.build_limit_poll_seconds,
        )
        labels = api.inspect_image(image_id)["Config"].get("Labels") or labels
    control.check()
    run_smoke_checks(
        api,
        image_id,
        conventions.roles,
        network=network.mode,
        limits=limits,
        cache_dir=settings.launcher_cache_dir,
        log=log,
        control=control,
    )
    return AssembledImage(
        image_id=image_id, conventions=conventions, labels=labels, dockerfile=context.dockerfile
    )
