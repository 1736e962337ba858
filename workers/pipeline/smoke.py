"""Green means it boots: before an image is pushed, each role that declares a smoke check is
started from it and checked.

A role runs as deploy hosts run it (`docker run IMAGE ROLE`, through the launcher), on the build
network, with the image's own environment only: no secret of the build host reaches it. The check
runs inside the role's container with `docker exec`, so it needs no route to the container:
`{"http": PORT, "path": ...}` runs Cartridge's probe (copied in for the check, not part of the
image), `{"exec": ...}` a command line of the image through /bin/sh -c. It is retried until it
passes or `within_seconds` have passed since the role started; a role that exits first fails at
once. A failure ends the build `failed`, with the role's last output and the check's last result
in the log.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import requests

from workers.pipeline.control import BuildControl
from workers.pipeline.launcher import LAUNCHER_DIR, SOURCES, compiled
from workers.pipeline.limits import BuildLimits
from workers.pipeline.outcomes import BuildErrored, BuildFailed
from workers.pipeline.roles import Role, Smoke
from workers.pipeline.steplog import StepLog

PROBE = f"{LAUNCHER_DIR}/smoke-probe"
RETRY_SECONDS = 0.25
LAST_OUTPUT_LINES = 40
# A check command that hangs is stopped after 10 s (and tried again) where the image has
# `timeout` (busybox and coreutils both do); elsewhere the build's own time limit bounds it.
_BOUNDED = (
    'if command -v timeout >/dev/null 2>&1; then exec timeout 10 /bin/sh -c "$1"; fi; '
    'exec /bin/sh -c "$1"'
)


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    detail: str


def run_smoke_checks(
    api: docker.APIClient,
    image_id: str,
    roles: dict[str, Role],
    *,
    network: str | None,
    limits: BuildLimits,
    cache_dir: Path,
    log: StepLog,
    control: BuildControl,
) -> None:
    """Checks every role that has a smoke check, in name order; `BuildFailed` on the first that
    does not pass."""
    checked = {name: role.smoke for name, role in sorted(roles.items()) if role.smoke}
    if not checked:
        return
    probe = compiled(SOURCES / "probe.c", cache_dir)
    with log.step("smoke", ", ".join(checked)):
        for name, smoke in checked.items():
            control.check()
            _check_role(api, image_id, name, smoke, network, limits, probe, log, control)


def _check_role(
    api: docker.APIClient,
    image_id: str,
    name: str,
    smoke: Smoke,
    network: str | None,
    limits: BuildLimits,
    probe: Path,
    log: StepLog,
    control: BuildControl,
) -> None:
    try:
        container = api.create_container(
            image_id,
            command=[name],
            labels={"dev.cartridge.smoke": name},
            # The role runs the repository's code: within the build's limits, as its steps do.
            host_config=api.create_host_config(network_mode=network, **limits.container_options()),
        )["Id"]
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BuildErrored(f"could not start role {name} for its smoke check: {exc}") from exc
    try:
        if smoke.http is not None:
            api.put_archive(container, LAUNCHER_DIR, _probe_archive(probe))
        api.start(container)
        control.container_started(container)
        started = time.monotonic()
        result = _wait_for_pass(api, container, smoke, started, control)
        took = time.monotonic() - started
        control.check()
        if result.passed:
            log.line(f"{name}: {smoke.describe()} passed after {took:.2f}s: {result.detail}")
            return
        log.line(f"{name}: last output of the role:")
        log.write(_last_output(api, container))
        log.line(f"{name}: {smoke.describe()}: {result.detail}")
        if api.inspect_container(container)["State"].get("OOMKilled"):
            raise limits.out_of_memory(f"role {name}, during its smoke check,")
        raise BuildFailed(f"the smoke check of role {name} failed: {result.detail}")
    except (docker.errors.DockerException, requests.RequestException) as exc:
        control.check()
        raise BuildErrored(f"the smoke check of role {name} could not run: {exc}") from exc
    finally:
        control.container_finished()
        # A container left behind (engine gone meanwhile) carries the dev.cartridge.smoke label.
        with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
            api.remove_container(container, force=True)


def _wait_for_pass(
    api: docker.APIClient,
    container: str,
    smoke: Smoke,
    started: float,
    control: BuildControl,
) -> CheckResult:
    deadline = started + smoke.within_seconds
    last = CheckResult(False, "not checked yet")
    while True:
        control.check()
        state = api.inspect_container(container)["State"]
        if not state.get("Running"):
            return CheckResult(
                False,
                f"the role exited with status {state.get('ExitCode')} "
                f"{time.monotonic() - started:.2f}s after it started, before its check passed",
            )
        last = _check_once(api, container, smoke)
        if last.passed:
            return last
        if time.monotonic() >= deadline:
            return CheckResult(
                False, f"not passed within {smoke.within_seconds:g}s; last try: {last.detail}"
            )
        time.sleep(RETRY_SECONDS)


def _check_once(api: docker.APIClient, container: str, smoke: Smoke) -> CheckResult:
    if smoke.http is not None:
        command = [PROBE, str(smoke.http), smoke.path]
    else:
        command = ["/bin/sh", "-c", _BOUNDED, "smoke", smoke.exec or ""]
    try:
        execution = api.exec_create(container, command, stdout=True, stderr=True)
        output = api.exec_start(execution["Id"], stream=False, demux=False) or b""
        code = api.exec_inspect(execution["Id"]).get("ExitCode")
    except docker.errors.APIError as exc:
        # The container stopped between the state check and the exec: the next round says so.
        return CheckResult(False, f"could not run the check: {exc.explanation or exc}")
    text = output.decode("utf-8", "replace").strip()
    text = text.splitlines()[-1] if text else "no output"
    if smoke.http is not None:
        return CheckResult(code == 0, text)
    return CheckResult(code == 0, f"exit status {code}: {text}")


def _probe_archive(probe: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tar.gettarinfo(str(probe), PROBE.rsplit("/", 1)[1])
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "", ""
        with probe.open("rb") as source:
            tar.addfile(info, source)
    return buffer.getvalue()


def _last_output(api: docker.APIClient, container: str) -> str:
    raw = api.logs(container, stdout=True, stderr=True, tail=LAST_OUTPUT_LINES)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if not text.strip():
        return "(no output)\n"
    return text if text.endswith("\n") else text + "\n"
