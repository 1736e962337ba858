"""Start time of a role through Cartridge's launcher vs the same program as a plain entrypoint.

One image is built with Cartridge's pipeline (busybox base, launcher included) with the role
`noop` = `/bin/true`. Two measurements, each side alternating with the other:

- `docker run`: wall time of create + start + wait + remove, `docker run IMAGE noop` against
  `docker run --entrypoint /bin/true IMAGE`. What a deploy host sees; the engine's own cost
  (hundreds of milliseconds) and its noise dominate.
- `chroot`: the image's root filesystem exported to a directory, then
  `chroot ROOT /cartridge/tini -s -- /cartridge/launch noop` against `chroot ROOT /bin/true`: the
  launcher's own cost (tini, the launch script, the shim, /bin/sh -c) without the engine's.

Run from the repository root as root, with dockerd up: `python3 bench/launcher_start.py`.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker

from app.config import Settings
from workers.pipeline.assemble import ImageSource, assemble_image
from workers.pipeline.control import BuildControl
from workers.pipeline.image_build import docker_api
from workers.pipeline.steplog import ConsoleLog

BASE_IMAGE = "cartridge/base:latest"
TAG = "cartridge-bench/launcher:latest"


def build(scratch: Path) -> str:
    checkout = scratch / "checkout"
    (checkout / "container").mkdir(parents=True)
    (checkout / "container/compile").write_text("#!/bin/sh\ntrue\n")
    (checkout / "container/compile").chmod(0o755)
    (checkout / "container/roles.json").write_text(json.dumps({"noop": "/bin/true"}))
    api = docker_api(None)
    assembled = assemble_image(
        ImageSource(checkout, "0" * 40, "bench", "bench/launcher", BASE_IMAGE, TAG),
        Settings(state_dir=scratch / "state"),
        api=api,
        log=ConsoleLog(io.StringIO()),
        control=BuildControl(api, deadline=time.monotonic() + 600),
        started=datetime.now(UTC),
    )
    return assembled.image_id


def docker_run_seconds(client: docker.DockerClient, image: str, launcher: bool) -> float:
    started = time.perf_counter()
    if launcher:
        client.containers.run(image, ["noop"], remove=True, network_mode="none")
    else:
        client.containers.run(image, [], entrypoint=["/bin/true"], remove=True, network_mode="none")
    return time.perf_counter() - started


def export_root(client: docker.DockerClient, image: str, root: Path) -> None:
    container = client.containers.create(image, ["noop"])
    try:
        stream = b"".join(container.export())
    finally:
        container.remove()
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        tar.extractall(root, filter="fully_trusted")  # noqa: S202 (the image just built)


def chroot_seconds(root: Path, launcher: bool) -> float:
    command = (
        ["chroot", str(root), "/cartridge/tini", "-s", "--", "/cartridge/launch", "noop"]
        if launcher
        else ["chroot", str(root), "/bin/true"]
    )
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def summary(name: str, plain: list[float], launcher: list[float]) -> str:
    plain_ms = statistics.median(plain) * 1000
    launcher_ms = statistics.median(launcher) * 1000
    paired = statistics.median(b - a for a, b in zip(plain, launcher, strict=True)) * 1000
    return (
        f"| {name} | {len(plain)} | {plain_ms:.1f} | {launcher_ms:.1f} | "
        f"{launcher_ms - plain_ms:+.1f} | {paired:+.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker-runs", type=int, default=30)
    parser.add_argument("--chroot-runs", type=int, default=300)
    options = parser.parse_args()
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        image = build(scratch)
        for launcher in (False, True):  # warm-up: the first container of an image is slower
            docker_run_seconds(client, image, launcher)
        runs: dict[bool, list[float]] = {False: [], True: []}
        for index in range(options.docker_runs):
            for launcher in (False, True) if index % 2 == 0 else (True, False):
                runs[launcher].append(docker_run_seconds(client, image, launcher))
        export_root(client, image, scratch / "root")
        chroots: dict[bool, list[float]] = {False: [], True: []}
        for index in range(options.chroot_runs):
            for launcher in (False, True) if index % 2 == 0 else (True, False):
                chroots[launcher].append(chroot_seconds(scratch / "root", launcher))
        client.images.remove(TAG, force=True)
    print(
        "| measurement | runs each | plain entrypoint, median (ms) | launcher, median (ms) |"
        " difference of medians (ms) | median of paired differences (ms) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    print(summary("`docker run`, create to removal", runs[False], runs[True]))
    print(summary("`chroot`, the launcher alone", chroots[False], chroots[True]))


if __name__ == "__main__":
    main()
