"""Stopping a running build from outside the pipeline's thread.

`BuildControl` is shared by the pipeline and the `Supervisor` thread. The supervisor renews the
build's lease every `heartbeat_seconds` with an UPDATE conditional on the build still running this
attempt; when that UPDATE matches nothing (cancelled through the API, superseded, handed back,
taken over after an expired lease) or the wall-clock limit passes, it aborts the build: the
container running a build step is killed at once and the pipeline raises at its next check.
"""

from __future__ import annotations

import logging
import threading
import time

import docker

from app.builds import leases
from app.db import get_session_factory
from app.models import BuildStatus
from workers.pipeline.outcomes import (
    BuildCancelled,
    BuildErrored,
    BuildHandedBack,
    BuildStopped,
)

log = logging.getLogger(__name__)


class BuildControl:
    def __init__(self, docker_api: docker.APIClient, *, deadline: float) -> None:
        self._docker = docker_api
        self.deadline = deadline
        self._lock = threading.Lock()
        self._reason: BuildStopped | None = None
        self._container: str | None = None

    @property
    def reason(self) -> BuildStopped | None:
        return self._reason

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def abort(self, reason: BuildStopped) -> None:
        """Stops the build for `reason` (the first reason wins)."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
            container = self._container
        if container is not None:
            self._kill(container)

    def check(self) -> None:
        """Raises the abort reason, if the build was aborted."""
        if self._reason is not None:
            raise self._reason

    def container_started(self, container_id: str) -> None:
        """Called when a build step starts a container; an aborted build kills it at once."""
        with self._lock:
            self._container = container_id
            aborted = self._reason is not None
        if aborted:
            self._kill(container_id)

    def container_finished(self) -> None:
        with self._lock:
            self._container = None

    def _kill(self, container_id: str) -> None:
        try:
            self._docker.kill(container_id)
        except docker.errors.NotFound:
            pass  # it finished (and was removed) meanwhile
        except Exception:
            log.exception("could not kill build container %s", container_id)


class Supervisor:
    """The build's heartbeat thread; see the module docstring."""

    def __init__(
        self,
        control: BuildControl,
        build_id: int,
        attempt: int,
        *,
        heartbeat_seconds: float,
        lease_seconds: int,
        timeout_seconds: int,
    ) -> None:
        self._control = control
        self._build_id = build_id
        self._attempt = attempt
        self._interval = heartbeat_seconds
        self._lease_seconds = lease_seconds
        self._timeout_seconds = timeout_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"build-heartbeat-{build_id}", daemon=True
        )

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            if self._control.remaining() <= 0:
                self._control.abort(
                    BuildErrored(f"build exceeded its time limit of {self._timeout_seconds}s")
                )
            try:
                self.beat()
            except Exception:
                # The database may be back at the next beat; the lease covers a few misses.
                log.exception("build %s: heartbeat failed", self._build_id)

    def beat(self) -> None:
        with get_session_factory()() as session:
            renewed = leases.renew(
                session, self._build_id, self._attempt, lease_seconds=self._lease_seconds
            )
            session.commit()
            if renewed:
                return
            owner = leases.ownership(session, self._build_id)
        if (
            owner is not None
            and owner.attempt == self._attempt
            and owner.status == BuildStatus.CANCELLED
        ):
            self._control.abort(BuildCancelled(f"cancelled: {owner.cancel_reason or 'by request'}"))
        else:
            self._control.abort(
                BuildHandedBack("this attempt no longer owns the build; stopping without a result")
            )
