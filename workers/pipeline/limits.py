"""The resource limits of a build's containers, and what a build step that exceeds one becomes.

Every container a build runs (the `container/dependencies` and `container/compile` steps alike)
gets, from the engine:

- memory, and swap beyond it: set when the builder creates the container; past it the kernel
  kills a process of the step (an OOM kill), which the container's state records;
- CPU time: a CFS quota of `cpus` CPUs' worth of time per period, spread over any CPUs;
- a process limit (threads included): the classic builder takes none, so it is set on the
  container through the engine's update endpoint as the step starts (the engine applies it as
  soon as the container's start completes, before the step can have forked more than a few
  processes); a step found at the limit twice in a row is stopped, a fork bomb being the usual
  reason;
- disk: every file is capped at the limit by RLIMIT_FSIZE (kernel-enforced), and what the step
  wrote in all (its container's writable layer, `/tmp` included) is measured every
  `build_limit_poll_seconds` (less often when measuring is slow) and the step stopped past it.

A step stopped by a limit fails the build (`failed`: the repository asked for more than it is
allowed) with a message naming the limit and the setting that raises it; the worker, which runs
outside the build's containers, and other builds are unaffected.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import docker
import requests

from app.config import Settings
from app.sizes import format_size
from workers.pipeline import cgroups
from workers.pipeline.control import BuildControl
from workers.pipeline.outcomes import BuildErrored, BuildFailed

log = logging.getLogger(__name__)

CPU_PERIOD_MICROSECONDS = 100_000
# Measuring the disk use walks the step's files; this keeps it under a tenth of the engine's time.
_DISK_CHECK_COST_FACTOR = 10
# Samples in a row that find the step at its process limit before it is stopped.
_PIDS_SAMPLES_AT_LIMIT = 2
_UPDATE_ATTEMPTS = 3


@dataclass(frozen=True)
class Limit:
    value: int
    setting: str  # what raises it: the environment variable or the repository's setting


@dataclass(frozen=True)
class CpuLimit:
    value: float
    setting: str


@dataclass(frozen=True)
class BuildLimits:
    memory: Limit  # bytes
    swap: Limit  # bytes beyond the memory
    cpus: CpuLimit
    pids: Limit
    disk: Limit  # bytes each step may write

    @classmethod
    def resolve(cls, settings: Settings, own: dict[str, Any] | None) -> BuildLimits:
        """The installation's limits, with the keys a repository set (`build_limits`) replacing
        them one by one."""
        chosen: dict[str, tuple[Any, str]] = {}
        for field in fields(cls):
            name = field.name
            if own and own.get(name) is not None:
                chosen[name] = (own[name], f"the repository's build_limits.{name}")
            else:
                chosen[name] = (
                    getattr(settings, f"build_{name}"),
                    f"CARTRIDGE_BUILD_{name.upper()}",
                )
        cpus, cpus_setting = chosen.pop("cpus")
        return cls(
            cpus=CpuLimit(float(cpus), cpus_setting),
            **{name: Limit(int(value), setting) for name, (value, setting) in chosen.items()},
        )

    def engine_parameters(self) -> dict[str, str | int]:
        """Query parameters of the engine's `POST /build` applied to every container it runs."""
        disk = self.disk.value
        return {
            "memory": self.memory.value,
            "memswap": self.memory.value + self.swap.value,
            "cpuperiod": CPU_PERIOD_MICROSECONDS,
            "cpuquota": max(1000, round(self.cpus.value * CPU_PERIOD_MICROSECONDS)),
            "ulimits": json.dumps([{"Name": "fsize", "Soft": disk, "Hard": disk}]),
        }

    def container_options(self) -> dict[str, Any]:
        """The same limits as `create_host_config` arguments, for containers Cartridge creates
        itself (smoke checks); the process limit is set at creation there."""
        disk = self.disk.value
        return {
            "mem_limit": self.memory.value,
            "memswap_limit": self.memory.value + self.swap.value,
            "cpu_period": CPU_PERIOD_MICROSECONDS,
            "cpu_quota": max(1000, round(self.cpus.value * CPU_PERIOD_MICROSECONDS)),
            "pids_limit": self.pids.value,
            "ulimits": [docker.types.Ulimit(name="fsize", soft=disk, hard=disk)],
        }

    def describe(self) -> str:
        swap = f"{format_size(self.swap.value)} of swap" if self.swap.value else "no swap"
        cpus = f"{self.cpus.value:g} CPU{'' if self.cpus.value == 1 else 's'}"
        return (
            f"memory {format_size(self.memory.value)}, {swap}, {cpus}, "
            f"{self.pids.value} processes, {format_size(self.disk.value)} of disk per step"
        )

    def out_of_memory(self, step: str) -> BuildFailed:
        limit = self.memory
        swap = f" + {format_size(self.swap.value)} swap" if self.swap.value else ""
        return BuildFailed(
            f"{step} ran out of memory (limit {format_size(limit.value)}{swap}, {limit.setting})"
        )

    def too_many_processes(self, step: str) -> BuildFailed:
        limit = self.pids
        return BuildFailed(
            f"{step} reached the process limit (limit {limit.value} processes and threads, "
            f"{limit.setting})"
        )

    def out_of_disk(self, step: str, written: int) -> BuildFailed:
        limit = self.disk
        return BuildFailed(
            f"{step} exceeded the disk limit (wrote {format_size(written)}, limit "
            f"{format_size(limit.value)}, {limit.setting})"
        )


@dataclass
class _Step:
    container: str
    name: str  # what runs in it, e.g. container/compile
    # Where the kernel counts the processes it refused the step (None: this worker cannot see
    # it), and the count last read.
    pids_events: Path | None = None
    looked_for_pids_events: bool = False
    refused: int = 0
    reached_pids_limit: bool = False
    samples_at_pids_limit: int = 0
    written: int = 0
    next_disk_check: float = 0.0


class StepWatcher:
    """Applies the process limit to each build step's container as it starts, measures the
    running step, and after a failed step says which limit (if any) it ran into. The container
    of a failed step is kept by the engine for that (the build runs without `forcerm`) and
    removed here on exit."""

    def __init__(
        self,
        api: docker.APIClient,
        limits: BuildLimits,
        control: BuildControl,
        *,
        poll_seconds: float,
    ) -> None:
        self._api = api
        self._limits = limits
        self._control = control
        self._interval = poll_seconds
        self._lock = threading.Lock()
        self._step: _Step | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="build-limits", daemon=True)

    def __enter__(self) -> StepWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)
        with self._lock:
            step, self._step = self._step, None
        if step is not None:
            self._remove(step.container)

    def step_started(self, container: str, name: str) -> None:
        step = _Step(container, name, next_disk_check=time.monotonic() + self._interval)
        with self._lock:
            self._step = step
        self._limit_processes(container)

    def step_finished(self) -> None:
        """The step succeeded; the engine committed and removed its container."""
        with self._lock:
            self._step = None

    def failure(self) -> BuildFailed | None:
        """The limit the step that just failed ran into, or None if it failed on its own."""
        with self._lock:
            step = self._step
        if step is None:
            return None
        try:
            state = self._api.inspect_container(step.container)["State"]
            written = self._written(step.container)
        except (docker.errors.DockerException, requests.RequestException):
            log.exception("could not inspect the failed build step %s", step.container)
            return None
        if state.get("OOMKilled"):
            return self._limits.out_of_memory(step.name)
        if written >= self._limits.disk.value:
            # A file stopped at RLIMIT_FSIZE, or the step wrote past the limit between checks.
            return self._limits.out_of_disk(step.name, written)
        if step.reached_pids_limit:
            return self._limits.too_many_processes(step.name)
        return None

    def _limit_processes(self, container: str) -> None:
        # docker-py's update_container has no PidsLimit; the engine's endpoint has (API 1.40+).
        url = self._api._url("/containers/{0}/update", container)
        problem: Exception | None = None
        for _ in range(_UPDATE_ATTEMPTS):
            try:
                response = self._api._post_json(url, data={"PidsLimit": self._limits.pids.value})
                self._api._raise_for_status(response)
                return
            except (docker.errors.DockerException, requests.RequestException) as exc:
                problem = exc
            # A quick step may end before the limit arrives (the engine may not know it yet):
            # nothing is left to limit then.
            if self._has_exited(container):
                return
            time.sleep(0.2)
        # No step runs without its process limit: stopping it errors the build.
        self._control.abort(BuildErrored(f"could not limit the build step's processes: {problem}"))

    def _has_exited(self, container: str) -> bool:
        try:
            state = self._api.inspect_container(container)["State"]
        except docker.errors.NotFound:
            return True
        except (docker.errors.DockerException, requests.RequestException):
            return False
        return state.get("Status") in ("exited", "dead")

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            with self._lock:
                step = self._step
            if step is None:
                continue
            try:
                self._measure(step)
            except docker.errors.NotFound:
                pass  # the step ended meanwhile
            except Exception:
                # The next sample may work; the kernel-enforced limits hold meanwhile.
                log.exception("could not measure build step %s", step.container)

    def _measure(self, step: _Step) -> None:
        self._measure_processes(step)
        if step.samples_at_pids_limit >= _PIDS_SAMPLES_AT_LIMIT:
            self._control.abort(self._limits.too_many_processes(step.name))
            return
        now = time.monotonic()
        if now < step.next_disk_check:
            return
        step.written = self._written(step.container)
        took = time.monotonic() - now
        step.next_disk_check = now + max(self._interval, _DISK_CHECK_COST_FACTOR * took)
        if step.written > self._limits.disk.value:
            self._control.abort(self._limits.out_of_disk(step.name, step.written))

    def _measure_processes(self, step: _Step) -> None:
        """A sample is "at the limit" when the step has as many processes as it may, or when the
        kernel refused it one since the last sample (a fork bomb's processes come and go)."""
        stats = self._api.stats(step.container, stream=False, one_shot=True)
        pids = int((stats.get("pids_stats") or {}).get("current") or 0)
        if not step.looked_for_pids_events:
            container = self._api.inspect_container(step.container)
            if container["State"].get("Pid"):  # 0 until the step's process has started
                step.looked_for_pids_events = True
                step.pids_events = cgroups.pids_events(container["State"]["Pid"], container["Id"])
        refused_since = False
        if step.pids_events is not None:
            refused = cgroups.refusals(step.pids_events)
            if refused is not None and refused > step.refused:
                step.refused, refused_since = refused, True
        at_limit = refused_since or pids >= self._limits.pids.value
        step.reached_pids_limit = step.reached_pids_limit or at_limit
        step.samples_at_pids_limit = step.samples_at_pids_limit + 1 if at_limit else 0

    def _written(self, container: str) -> int:
        """Bytes in the container's writable layer (what the step added or changed)."""
        listed = self._api.containers(all=True, size=True, filters={"id": container})
        return int(listed[0].get("SizeRw") or 0) if listed else 0

    def _remove(self, container: str) -> None:
        try:
            self._api.remove_container(container, force=True)
        except docker.errors.NotFound:
            pass
        except Exception:
            log.exception("could not remove the container of failed build step %s", container)
