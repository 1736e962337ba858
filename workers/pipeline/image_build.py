"""Building the image on the build host's Docker engine, streaming the output to the build log."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import docker
import requests

from workers.pipeline.context import BuildContext
from workers.pipeline.control import BuildControl
from workers.pipeline.conventions import COMPILE, DEPENDENCIES
from workers.pipeline.launcher import SHELL_CHECK
from workers.pipeline.limits import BuildLimits, StepWatcher
from workers.pipeline.outcomes import BuildErrored, BuildFailed, BuildStopped
from workers.pipeline.steplog import StepLog

_RUNNING_IN = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})\s*$")
_REMOVING = re.compile(r"^Removing intermediate container ([0-9a-f]{12,64})\s*$")
_STEP = re.compile(r"^Step \d+/\d+ : (.*)$")
_NON_ZERO = re.compile(r"returned a non-zero code: (\d+)$")
_CANNOT_START = ("exec format error", "no such file or directory", "permission denied")


def docker_api(docker_host: str | None, *, timeout: float = 60) -> docker.APIClient:
    """A client for the build host's engine, or `BuildErrored` if it does not answer."""
    options: dict[str, Any] = docker.utils.kwargs_from_env()
    if docker_host:
        options["base_url"] = docker_host
    where = options.get("base_url") or "the default socket"
    try:
        # version="auto" asks the engine for its API version: that request is the check.
        api = docker.APIClient(version="auto", timeout=timeout, **options)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BuildErrored(f"the Docker engine at {where} is unreachable: {exc}") from exc
    return api


def ensure_base_image(api: docker.APIClient, base_image: str, host_name: str) -> None:
    """Base images are provided by the operator; Cartridge never pulls one."""
    try:
        api.inspect_image(base_image)
    except docker.errors.ImageNotFound as exc:
        raise BuildErrored(
            f"the base image {base_image} is not on build host {host_name}; Cartridge never "
            "pulls base images: build or load it there (docker load / docker pull)"
        ) from exc


def build_image(
    api: docker.APIClient,
    context: BuildContext,
    *,
    tag: str,
    network: str,
    limits: BuildLimits,
    log: StepLog,
    control: BuildControl,
    cache_from: list[str] | None = None,
    limit_poll_seconds: float = 1.0,
) -> str:
    """Builds the context and tags the image `tag`, every step's container on `network` and
    within `limits`. Returns the image id. The context is streamed to the engine while it is
    being written, not staged on disk first."""
    writer = _ContextWriter(context)
    with StepWatcher(api, limits, control, poll_seconds=limit_poll_seconds) as watcher:
        progress = _Progress(log, control, watcher)
        try:
            with writer.stream() as tar:
                for event in _build_events(
                    api, tar, tag=tag, network=network, limits=limits, cache_from=cache_from
                ):
                    progress.handle(event)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            control.check()
            writer.check()
            raise BuildErrored(f"the Docker engine failed during the build: {exc}") from exc
        finally:
            control.container_finished()
        writer.check()
        # A step killed because the build was cancelled, timed out or exceeded a limit the
        # watcher measures is no plain compile failure.
        control.check()
        if progress.error is not None:
            raise watcher.failure() or progress.problem()
    if progress.image_id is None:
        raise BuildErrored("the Docker engine ended the build without an image id")
    return progress.image_id


def _build_events(
    api: docker.APIClient,
    tar: BinaryIO,
    *,
    tag: str,
    network: str,
    limits: BuildLimits,
    cache_from: list[str] | None,
) -> Iterator[dict[str, Any]]:
    """`POST /build` with the limits docker-py's `build()` cannot pass (CPU quota, ulimits).
    The container of a failed step is kept (no `forcerm`) so that its state tells an OOM kill
    from an exit; `StepWatcher` removes it."""
    params: dict[str, Any] = {
        "t": tag,
        "pull": False,
        "rm": True,
        "forcerm": False,
        "networkmode": network,
        **limits.engine_parameters(),
    }
    if cache_from:
        # With sources, the classic builder reuses only steps of their lineage.
        params["cachefrom"] = json.dumps(cache_from)
    response = api._post(
        api._url("/build"),
        data=tar,
        params=params,
        headers={"Content-Type": "application/tar"},
        stream=True,
        timeout=None,
    )
    api._raise_for_status(response)
    yield from api._stream_helper(response, decode=True)


class _Progress:
    """What the build's event stream has said so far."""

    def __init__(self, log: StepLog, control: BuildControl, watcher: StepWatcher) -> None:
        self._log = log
        self._control = control
        self._watcher = watcher
        self.step = ""
        self.image_id: str | None = None
        self.error: str | None = None

    def handle(self, event: dict[str, Any]) -> None:
        if "stream" in event:
            text = event["stream"]
            self._log.write(text)
            if match := _STEP.match(text):
                self.step = match.group(1)
            elif match := _RUNNING_IN.match(text):
                self._control.container_started(match.group(1))
                self._watcher.step_started(match.group(1), self.script() or "the build step")
            elif _REMOVING.match(text):
                self._control.container_finished()
                self._watcher.step_finished()
        elif "error" in event:
            self.error = str(event["error"]).strip() or "no reason given"
            self._log.line(f"error: {self.error}")
        elif isinstance(event.get("aux"), dict) and "ID" in event["aux"]:
            self.image_id = event["aux"]["ID"]

    def script(self) -> str | None:
        """The repository's script the current step runs, if it runs one."""
        return next((s for s in (COMPILE, DEPENDENCIES) if f"/app/{s}" in self.step), None)

    def problem(self) -> Exception:
        """The outcome for the error that ended the build: the repository's scripts failing
        (or not starting) is the repository's problem; anything else is the engine's."""
        message = self.error or ""
        if self.step.strip() == SHELL_CHECK and "no such file or directory" in message:
            return BuildFailed(
                "the base image has no /bin/sh: Cartridge's launcher runs every role through "
                "/bin/sh -c, so the base image must provide a POSIX shell at /bin/sh"
            )
        script = self.script()
        if script is not None:
            if match := _NON_ZERO.search(message):
                return BuildFailed(f"{script} exited with status {match.group(1)} (see the log)")
            if any(marker in message for marker in _CANNOT_START):
                return BuildFailed(
                    f"{script} could not be started: {message}. It needs a '#!' line naming an "
                    "interpreter that the base image has"
                )
        return BuildErrored(f"the image build failed: {message}")


class _ContextWriter:
    """Writes the build context into a pipe from a thread while the engine reads the other end."""

    def __init__(self, context: BuildContext) -> None:
        self._context = context
        self._error: BaseException | None = None

    @contextmanager
    def stream(self) -> Iterator[BinaryIO]:
        read_end, write_end = os.pipe()
        thread = threading.Thread(target=self._write, args=(write_end,), name="build-context")
        thread.start()
        try:
            with os.fdopen(read_end, "rb") as reader:
                yield reader
        finally:
            # Closing the read end (above) unblocks a writer the engine stopped reading from.
            thread.join()

    def check(self) -> None:
        if isinstance(self._error, BuildStopped):
            raise self._error  # e.g. a path outside the checkout: the repository's problem
        if self._error is not None:
            raise BuildErrored(f"could not send the checkout to the engine: {self._error}")

    def _write(self, fd: int) -> None:
        try:
            with os.fdopen(fd, "wb") as writer:
                self._context.write(writer)
        except BrokenPipeError:
            pass  # the engine stopped reading: its own error says why
        except Exception as exc:
            self._error = exc
