"""The shared layer cache: a warm build on a fresh build host against the same warm build on the
host that built the previous commit, and against a cold build.

The sample application of bench/build_overhead.py (dependencies: 400 files and 24 MiB; compile:
4 MiB of assets). Engine A is the machine's Docker engine; engine B is a second dockerd started
for the run (its own data root, overlay2 like A), holding only the base image. Each round, on fresh
dependency manifests:

1. cold: commit 1 built on A with the build host's own steps (workers.pipeline.assemble) and
   pushed to a throwaway registry;
2. warm, same host: commit 2 (one application file changed) built on A, which has the layers;
3. warm, fresh host: commit 2 built on B, timed from the pull of commit 1's image from the registry
   (workers.pipeline.layer_cache, as a build host does) to the end of the build.

Nothing is pushed after step 1. Run from the repository root as root with dockerd up:
`python3 bench/shared_cache.py --rounds 3 [--install-seconds 20]`.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_overhead import EXECUTABLES, application

from app.config import Settings
from tests.support.engine import second_engine
from tests.support.registry import run_registry
from workers.pipeline.assemble import ImageSource, assemble_image
from workers.pipeline.control import BuildControl
from workers.pipeline.image_build import docker_api
from workers.pipeline.layer_cache import pull_cache_sources
from workers.pipeline.steplog import ConsoleLog

BASE_IMAGE = "cartridge/base:latest"


def checkout(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(0o755 if relative in EXECUTABLES else 0o644)
    return root


def build(
    engine: str | None, tree: Path, tag: str, settings: Settings, cache_from: list[str]
) -> str:
    api = docker_api(engine, timeout=600)
    out = io.StringIO()
    assemble_image(
        ImageSource(tree, "0" * 40, "bench", "bench/cache", BASE_IMAGE, tag, tuple(cache_from)),
        settings,
        api=api,
        log=ConsoleLog(out),
        control=BuildControl(api, deadline=time.monotonic() + 1800),
        started=datetime.now(UTC),
    )
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--install-seconds",
        type=float,
        default=0,
        help="Make container/dependencies this much slower, a stand-in for the downloads and "
        "native builds of a real install (the sample's own takes well under a second).",
    )
    options = parser.parse_args()
    times: dict[str, list[float]] = {"cold": [], "same": [], "fresh": []}
    hits: list[bool] = []
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        settings = Settings(state_dir=scratch / "state", build_network="none")
        load_before = os.getloadavg()[0]
        with run_registry(scratch / "registry") as registry, second_engine((BASE_IMAGE,)) as b:
            for number in range(options.rounds):
                files = application(uuid.uuid4().hex)
                if options.install_seconds:
                    files["container/dependencies"] = files["container/dependencies"].replace(
                        "set -e\n", f"set -e\nsleep {options.install_seconds:g}\n", 1
                    )
                name = f"bench-cache-{uuid.uuid4().hex[:8]}"
                first = checkout(scratch / f"{name}-1", files)
                tag = f"{registry.host}/{name}:one"
                started = time.perf_counter()
                build(None, first, tag, settings, [])
                times["cold"].append(time.perf_counter() - started)
                api = docker_api(None, timeout=600)
                for _event in api.push(f"{registry.host}/{name}", tag="one", stream=True):
                    pass
                digest = api.inspect_image(tag)["RepoDigests"][0].partition("@")[2]

                files["app/model_7.rb"] = "class Model7; def changed; end; end\n"
                second = checkout(scratch / f"{name}-2", files)
                started = time.perf_counter()
                build(None, second, f"{registry.host}/{name}:two", settings, [])
                times["same"].append(time.perf_counter() - started)

                started = time.perf_counter()
                log = ConsoleLog(io.StringIO())
                api_b = docker_api(b, timeout=600)
                sources = pull_cache_sources(
                    api_b,
                    registry.host,
                    [f"{name}@{digest}"],
                    log=log,
                    control=BuildControl(api_b, deadline=time.monotonic() + 600),
                )
                output = build(b, second, f"{registry.host}/{name}:two", settings, sources)
                times["fresh"].append(time.perf_counter() - started)
                hits.append("installed " not in output and "Using cache" in output)
                print(
                    f"round {number + 1}: "
                    + ", ".join(f"{key} {values[-1]:.2f}s" for key, values in times.items()),
                    file=sys.stderr,
                )
        load_after = os.getloadavg()[0]
    cold, same, fresh = (statistics.median(times[key]) for key in ("cold", "same", "fresh"))
    print(f"load average {load_before:.1f} before, {load_after:.1f} after; ")
    print(f"dependency step a cache hit on the fresh host in {sum(hits)} of {len(hits)} rounds")
    print("| build | median (s) | against the same-host warm build |")
    print("| --- | --- | --- |")
    print(f"| cold (engine A) | {cold:.2f} | {cold / same:.2f}x |")
    print(f"| warm, same host (engine A) | {same:.2f} | 1.00x |")
    print(f"| warm, fresh host (engine B, pull included) | {fresh:.2f} | {fresh / same:.2f}x |")


if __name__ == "__main__":
    main()
