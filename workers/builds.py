"""The build task: `cartridge.builds.run(build_id)` turns a queued build into a verified image.

The task claims the build with a conditional queued -> running update (a duplicate or late
message finds it no longer queued and does nothing), runs the pipeline under a heartbeat, and
records the outcome conditionally on still owning the attempt.

Shutdown: Celery's warm shutdown (SIGTERM to the main worker process) takes no new message and
waits for the running build. If the build is still running `worker_grace_seconds` later, the
worker hands it back: the build is queued again as a new attempt for another worker, and this
attempt's heartbeat notices, kills its container and returns, so the worker can exit.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.signals import worker_shutting_down
from celery.worker import state as worker_state
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.broker import BUILD_TASK, get_celery
from app.builds import lifecycle
from app.builds.leases import hand_back
from app.config import Settings, get_settings
from app.db import get_session_factory, session_scope
from app.images import service as images
from app.logs import log_context
from app.models import Build, BuildStatus, Registry, Repository
from app.models.base import utcnow
from app.registries.replication import ReplicationResult, replicate_image
from app.registries.service import ensure_default_registry
from workers.pipeline.buildlog import BuildLog
from workers.pipeline.control import BuildControl, Supervisor
from workers.pipeline.image_build import docker_api
from workers.pipeline.layer_cache import cache_sources
from workers.pipeline.limits import BuildLimits
from workers.pipeline.outcomes import (
    BuildCancelled,
    BuildErrored,
    BuildFailed,
    BuildHandedBack,
)
from workers.pipeline.run import BuildJob, BuiltImage, run_pipeline
from workers.pipeline.workspace import sweep_stale, workspace

log = logging.getLogger(__name__)
celery_app = get_celery()


# A database outage before the claim would otherwise lose the message with the build still queued;
# after the claim, a retried message finds the build running and the lease reaper takes over.
@celery_app.task(
    name=BUILD_TASK,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=20,
)
def run_build(build_id: int) -> str:
    """Builds `build_id` if it is queued. Returns the status it left the build in."""
    settings = get_settings()
    job = claim(build_id, settings)
    if job is None:
        return "skipped"
    _sweep_workspaces(settings)
    build_log = BuildLog(
        job.build_id,
        job.attempt,
        flush_seconds=settings.build_log_flush_seconds,
        flush_bytes=settings.build_log_flush_bytes,
        max_bytes=settings.build_log_max_bytes,
        tail_bytes=settings.build_log_tail_bytes,
        secrets=[settings.git_token.get_secret_value()] if settings.git_token else [],
    )
    context = log_context(
        build_id=job.build_id, repository=job.repository, sha=job.sha, attempt=job.attempt
    )
    with context:
        log.info("build started on %s", settings.host_name)
        try:
            # The workspace goes once the outcome is recorded, off the path to a green status.
            with workspace(settings.workspace_dir, job.build_id, job.attempt) as root:
                outcome = execute(job, settings, build_log, root)
        finally:
            build_log.close()
        log.info("build ended: %s", outcome)
        return outcome


def claim(build_id: int, settings: Settings) -> BuildJob | None:
    """Moves the build from queued to running on this host; None if it was not queued."""
    with session_scope() as session:
        build = lifecycle.claim(
            session, build_id, host=settings.host_name, lease_seconds=settings.lease_seconds
        )
        if build is None:
            return None
        repository = session.get_one(Repository, build.repository_id)
        replica_urls = tuple(session.scalars(select(Registry.url)))
        return BuildJob(
            build_id=build.id,
            attempt=build.attempt,
            sha=build.sha,
            repository=repository.full_name,
            clone_url=repository.clone_url,
            image_name=repository.image_name,
            base_image=repository.base_image or settings.base_image,
            cache_sources=tuple(cache_sources(session, build, repository)),
            limits=BuildLimits.resolve(settings, repository.build_limits),
            replica_urls=replica_urls,
        )


def execute(job: BuildJob, settings: Settings, build_log: BuildLog, root: Path) -> str:
    started_at = utcnow()
    started = time.monotonic()
    build_log.line(
        f"==> build {job.repository}@{job.sha} (attempt {job.attempt}) on {settings.host_name}"
    )
    try:
        api = docker_api(settings.docker_host)
        control = BuildControl(api, deadline=started + settings.build_timeout_seconds)
        with Supervisor(
            control,
            job.build_id,
            job.attempt,
            heartbeat_seconds=settings.heartbeat_seconds,
            lease_seconds=settings.lease_seconds,
            timeout_seconds=settings.build_timeout_seconds,
        ):
            built = run_pipeline(
                job,
                settings,
                api=api,
                log=build_log,
                control=control,
                started=started_at,
                root=root,
            )
            control.check()
            replicated = replicate(job, built, build_log)
        # Past the heartbeat: a build that waits for its replicas holds no lease.
        if not replicated.quorum_met:
            return wait_for_quorum(job, build_log, replicated, settings)
    except BuildFailed as stop:
        return finish(job, build_log, BuildStatus.FAILED, stop.message)
    except BuildErrored as stop:
        return finish(job, build_log, BuildStatus.ERRORED, stop.message)
    except (BuildCancelled, BuildHandedBack) as stop:
        build_log.line(f"==> stopped: {stop.message}")
        return "stopped"
    except Exception as exc:
        log.exception("build %s: internal error", job.build_id)
        build_log.write(traceback.format_exc())
        return finish(job, build_log, BuildStatus.ERRORED, f"internal error: {exc!r}")
    build_log.line(f"==> succeeded in {time.monotonic() - started:.2f}s")
    return finish(job, build_log, BuildStatus.SUCCEEDED, None)


def replicate(job: BuildJob, built: BuiltImage, build_log: BuildLog) -> ReplicationResult:
    """Records the image, copies it to every registry replica and verifies it by digest. The
    build is green only when the quorum holds; missing replicas are repaired later."""
    started = time.monotonic()
    published = built.published
    manifest = published.manifest
    # The image row (and the default replica's, on first use) is committed before the copy, and
    # the copy opens no transaction of its own while replicas are contacted.
    with session_scope() as session:
        ensure_default_registry(session)
        image = images.record(
            session,
            build_id=job.build_id,
            attempt=job.attempt,
            image_name=published.image_name,
            tag=published.tag,
            manifest_digest=manifest.digest,
            config_digest=manifest.config_digest,
            media_type=manifest.media_type,
            size=manifest.size,
            layers=manifest.layers,
            roles=built.roles,
            labels=built.labels,
        )
        image_id = image.id
    result = replicate_image(image_id, source=published.registry)
    build_log.line(f"==> replicas {time.monotonic() - started:.2f}s: {result.describe()}")
    return result


def wait_for_quorum(
    job: BuildJob, build_log: BuildLog, result: ReplicationResult, settings: Settings
) -> str:
    """An image on some replicas but not enough of them: the build waits (held by no worker)
    for the repair job, up to `replica_quorum_wait_seconds`. On no replica at all, there is
    nothing to repair from: the build is errored at once."""
    error = f"image not verified on enough replicas: {result.describe()}"
    if not result.verified_on or settings.replica_quorum_wait_seconds <= 0:
        return finish(job, build_log, BuildStatus.ERRORED, error)
    build_log.flush()
    until = utcnow() + timedelta(seconds=settings.replica_quorum_wait_seconds)
    with session_scope() as session:
        waiting = lifecycle.await_quorum(
            session, job.build_id, job.attempt, until=until, report=result.describe()
        )
    return "waiting for replicas" if waiting else "stopped"


def finish(
    job: BuildJob,
    build_log: BuildLog,
    status: BuildStatus,
    error: str | None,
) -> str:
    """Records the outcome, if this attempt still owns the build. The log is complete before
    the status is final, so a reader that sees a final status has seen the whole log."""
    if error is not None:
        error = build_log.redact(error)
        build_log.line(f"==> {status.value}: {error}")
    build_log.flush(final=True)
    with session_scope() as session:
        moved = lifecycle.finish(session, job.build_id, job.attempt, status, error=error)
    if not moved:
        build_log.line(f"==> not recorded as {status.value}: the build changed meanwhile")
        return "stopped"
    return status.value


def _sweep_workspaces(settings: Settings) -> None:
    """Removes workspaces of attempts that no longer run on this host (left by a killed worker)."""

    def is_live(build_id: int, attempt: int) -> bool:
        with get_session_factory()() as session:
            build = session.get(Build, build_id)
            return (
                build is not None
                and build.attempt == attempt
                and build.status == BuildStatus.RUNNING
                and build.build_host == settings.host_name
            )

    for path in sweep_stale(settings.workspace_dir, is_live):
        log.info("removed stale workspace %s", path)


@worker_shutting_down.connect
def _hand_back_after_grace(sig: str = "", how: str = "", **_kwargs: Any) -> None:
    if how != "Warm":
        return
    grace = get_settings().worker_grace_seconds
    timer = threading.Timer(grace, hand_back_running_builds)
    timer.daemon = True
    timer.start()


def hand_back_running_builds() -> list[int]:
    """Requeues the builds this worker process is still running (called after the grace)."""
    settings = get_settings()
    handed: list[int] = []
    for request in list(worker_state.active_requests):
        if request.name != BUILD_TASK or not request.args:
            continue
        build_id = int(request.args[0])
        with session_scope() as session:
            note = f"worker on {settings.host_name} shutting down after its grace period"
            if hand_back(session, build_id, settings, note=note):
                handed.append(build_id)
    if handed:
        log.warning("handed back builds %s to the queue", handed)
    return handed
