"""`cartridge build` of a working tree vs `docker build` of the same context by hand.

The sample application of bench/build_overhead.py (dependencies: 400 files and 24 MiB; compile:
4 MiB of assets; 200 application files) in a git working tree. Cartridge: the `cartridge build
PATH` command, timed from its start (Python, staging the tree, the convention checks, the context
streamed to the engine) to its exit. By hand: `docker build` of a directory that already holds the
same context (Cartridge's Dockerfile and layout, written out beforehand by the same code), with the
classic builder Cartridge also uses (DOCKER_BUILDKIT=0), on network `none` on both sides.

Cold: fresh dependency manifests, so nothing beyond the base image and the launcher layer is
cached. Warm: the next commit, one application file changed. Each round uses a fresh pair of
trees; the two sides alternate which goes first. Nothing is pushed (`cartridge build` does not).

Run from the repository root with dockerd up: `python3 bench/local_build.py --rounds 3`.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker
from build_overhead import EXECUTABLES, application

from app.config import Settings
from workers.pipeline.context import build_context, image_labels
from workers.pipeline.conventions import check_repository
from workers.pipeline.launcher import find_launcher
from workers.pipeline.local import build_working_tree
from workers.pipeline.steplog import ConsoleLog

CARTRIDGE = Path(sys.executable).with_name("cartridge")
BASE_IMAGE = "cartridge/base:latest"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def tree(root: Path, files: dict[str, str]) -> str:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(0o755 if relative in EXECUTABLES else 0o644)
    if not (root / ".git").exists():
        git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "change")
    return git(root, "rev-parse", "HEAD")


def cartridge_build(root: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(CARTRIDGE), "build", "--repo", "bench/local-build", str(root)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def manual_build(root: Path, sha: str, settings: Settings, scratch: Path) -> float:
    """Seconds of `docker build` of a ready context directory for `root` at `sha`."""
    conventions = check_repository(root)
    labels = image_labels(
        sha=sha,
        source="bench",
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        repository="bench/manual",
        roles=conventions.roles,
    )
    context = build_context(
        root,
        sha,
        conventions,
        base_image=BASE_IMAGE,
        labels=labels,
        launcher=find_launcher(settings.tini_path, settings.launcher_cache_dir),
    )
    tar_path = scratch / f"context-{sha}.tar"
    with tar_path.open("wb") as out:
        context.write(out)
    directory = scratch / f"context-{sha}"
    with tarfile.open(tar_path) as tar:
        tar.extractall(directory, filter="tar")
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    tag = f"cartridge-bench/manual:{sha}"
    started = time.perf_counter()
    subprocess.run(
        ["docker", "build", "--network", "none", "-q", "-t", tag, str(directory)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def in_process_build(root: Path, settings: Settings) -> float:
    """`cartridge build` without the Python start-up: the same function the command calls."""
    started = time.perf_counter()
    build_working_tree(
        root, settings, log=ConsoleLog(io.StringIO()), repository="bench/local-build"
    )
    return time.perf_counter() - started


SIDES = ("cli", "in-process", "manual")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {
        (side, kind): [] for side in SIDES for kind in ("cold", "warm")
    }
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        state = scratch / "state"
        settings = Settings(state_dir=state, build_network="none", base_image=BASE_IMAGE)
        env = {
            **os.environ,
            "CARTRIDGE_STATE_DIR": str(state),
            "CARTRIDGE_BUILD_NETWORK": "none",
            "CARTRIDGE_BASE_IMAGE": BASE_IMAGE,
        }
        find_launcher(settings.tini_path, settings.launcher_cache_dir)  # the shim, once
        load_before = os.getloadavg()[0]
        for round_number in range(options.rounds):
            shift = round_number % len(SIDES)
            for side in SIDES[shift:] + SIDES[:shift]:
                root = scratch / f"{side}-{round_number}"
                root.mkdir()
                files = application(uuid.uuid4().hex)
                for kind in ("cold", "warm"):
                    if kind == "warm":
                        files["app/model_7.rb"] = f"class Model7; def x; {round_number}; end\n"
                    sha = tree(root, files)
                    if side == "cli":
                        seconds = cartridge_build(root, env)
                    elif side == "in-process":
                        seconds = in_process_build(root, settings)
                    else:
                        seconds = manual_build(root, sha, settings, scratch)
                    results[(side, kind)].append(seconds)
            print(
                f"round {round_number + 1}: "
                + ", ".join(f"{s} {k} {v[-1]:.2f}s" for (s, k), v in results.items()),
                file=sys.stderr,
            )
        load_after = os.getloadavg()[0]
    client = docker.from_env()
    for name in ("cartridge-bench/manual", "cartridge-local/bench-local-build"):
        for image in client.images.list(name=name):
            client.images.remove(image.id, force=True)
    print(f"load average {load_before:.1f} before, {load_after:.1f} after")
    print(
        "| build | `cartridge build` command (s) | the same in-process, no Python start-up (s) "
        "| `docker build` by hand (s) | ratios to by hand |"
    )
    print("| --- | --- | --- | --- | --- |")
    for kind, label in (("cold", "cold"), ("warm", "warm, one application file changed")):
        cli, inner, manual = (statistics.median(results[(side, kind)]) for side in SIDES)
        print(
            f"| {label} | {cli:.2f} | {inner:.2f} | {manual:.2f} | "
            f"{cli / manual:.2f}x, {inner / manual:.2f}x |"
        )


if __name__ == "__main__":
    main()
