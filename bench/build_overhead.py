"""Build overhead: the same sample repository built and pushed through Cartridge, and by hand.

Cartridge: a build row and its outbox job are committed (what the webhook receiver does), a real
Celery worker process fetches the commit from a token-protected git server, validates it, builds
on the local Docker engine, pushes to a throwaway registry and verifies the digest; the clock stops
when the build row reads `succeeded`.

By hand: `docker build <directory>` of the very same context (Cartridge's generated Dockerfile and
file layout, written out by the same code) + `docker push`, with the classic builder the Docker SDK
uses (DOCKER_BUILDKIT=0). The checkout and the context directory are ready beforehand: fetching the
commit and laying out the context are part of Cartridge's overhead.

Cold: dependency manifests with fresh content, so no layer beyond the base image is cached or
already in the registry. Warm: the next commit, which changes one application file.

Run from the repository root, with PostgreSQL, Redis, dockerd and docker-registry up
(`script/test` starts them): `python3 bench/build_overhead.py --rounds 3`.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ADMIN_DSN = os.environ.get(
    "CARTRIDGE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CARTRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN = uuid.uuid4().hex[:8]
DATABASE = f"cartridge_bench_{RUN}"
TOKEN = f"ghs_bench_{RUN}"

# A sample application: dependencies are the slow, cacheable part (many files and 24 MiB of
# incompressible "gems"); compile builds assets from the application files.
DEPENDENCIES = """#!/bin/sh
set -e
mkdir -p vendor/bundle
i=0
while [ $i -lt 400 ]; do
  head -c 2048 /dev/urandom > vendor/bundle/gem-$i.rb
  i=$((i + 1))
done
head -c 25165824 /dev/urandom > vendor/bundle/native.so
echo "installed $(ls vendor/bundle | wc -l) files"
"""
COMPILE = """#!/bin/sh
set -e
mkdir -p public/assets
cat app/*.rb | sha256sum > public/assets/manifest.txt
head -c 4194304 /dev/urandom > public/assets/application.js
echo "compiled assets for $(cat /app/REVISION)"
"""
ROLES = '{"web": "busybox httpd -f -p 8000 -h /app/public", ".shell": "/bin/sh -l"}\n'


def application(nonce: str) -> dict[str, str]:
    files = {
        "container/dependencies": DEPENDENCIES,
        "container/compile": COMPILE,
        "container/roles.json": ROLES,
        "container/files/etc/app.conf": "threads=4\n",
        "Gemfile": "source 'https://rubygems.org'\ngem 'rails'\n",
        "Gemfile.lock": f"GEM\n  specs:\n    rails (8.0.0)\n# {nonce}\n",
    }
    for index in range(200):
        files[f"app/model_{index}.rb"] = f"class Model{index}; end\n" * 20
    return files


EXECUTABLES = ("container/dependencies", "container/compile")


@dataclass
class Sample:
    cartridge_cold: float
    manual_cold: float
    cartridge_warm: float
    manual_warm: float
    steps_cold: dict[str, float]
    steps_warm: dict[str, float]
    manual_steps_cold: dict[str, float]
    manual_steps_warm: dict[str, float]


def admin(sql: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
        connection.execute(sql)  # type: ignore[arg-type]


def configure(state_dir: Path, registry: str) -> dict[str, str]:
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    env = {
        "CARTRIDGE_DATABASE_URL": f"{base}/{DATABASE}",
        "CARTRIDGE_BROKER_URL": REDIS_URL,
        "CARTRIDGE_BUILD_QUEUE": f"bench-builds-{RUN}",
        "CARTRIDGE_DEFAULT_QUEUE": f"bench-cartridge-{RUN}",
        "CARTRIDGE_STATE_DIR": str(state_dir),
        "CARTRIDGE_REGISTRY_URL": registry,
        "CARTRIDGE_GIT_TOKEN": TOKEN,
        "CARTRIDGE_BUILD_NETWORK": "none",
        "CARTRIDGE_HOST_NAME": f"bench-{RUN}",
    }
    os.environ.update(env)
    return env


def cartridge_build(repository_id: int, sha: str) -> tuple[float, dict[str, float]]:
    """Seconds from the commit of the build row to the commit that makes it `succeeded`, and
    the log's step timings."""
    from app.broker import BUILD_TASK
    from app.builds import logs
    from app.config import get_settings
    from app.db import session_scope
    from app.models import Build
    from app.outbox.service import enqueue

    committed_at = time.time()
    with session_scope() as session:
        build = Build(repository_id=repository_id, sha=sha)
        session.add(build)
        session.flush()
        enqueue(session, BUILD_TASK, [build.id], queue=get_settings().build_queue)
        build_id = build.id
    while True:
        with session_scope() as session:
            found = session.get(Build, build_id)
            assert found is not None
            status = found.status
            if status not in ("queued", "running"):
                log = logs.read(session, build_id, found.attempt).content
                assert found.started_at is not None
                assert found.finished_at is not None
                dispatch = found.started_at.timestamp() - committed_at
                # The worker stamps finished_at in the transaction that makes the build green;
                # polling slowly keeps this process from competing with the build for the CPU.
                elapsed = found.finished_at.timestamp() - committed_at
                break
        time.sleep(0.5)
    if status != "succeeded":
        raise RuntimeError(f"build {build_id} {status}:\n{log[-3000:]}")
    steps = {m[0]: float(m[1]) for m in re.findall(r"^==> (\w+) ([\d.]+)s(?::|$)", log, re.M)}
    steps["dispatch"] = dispatch  # from the commit of the build row to the worker's claim
    return elapsed, steps


def manual_build(checkout: Path, sha: str, tag: str) -> tuple[float, dict[str, float]]:
    """Seconds for `docker build` + `docker push` of the context Cartridge would send, and each
    of the two."""
    from app.config import get_settings
    from workers.pipeline.context import build_context, image_labels
    from workers.pipeline.conventions import check_repository
    from workers.pipeline.launcher import find_launcher

    conventions = check_repository(checkout)
    labels = image_labels(
        sha=sha,
        source="bench",
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        repository="bench/manual",
        roles=conventions.roles,
    )
    with tempfile.TemporaryDirectory() as scratch:
        settings = get_settings()
        context = build_context(
            checkout,
            sha,
            conventions,
            base_image="cartridge/base:latest",
            labels=labels,
            launcher=find_launcher(settings.tini_path, settings.launcher_cache_dir),
        )
        # A directory, as someone building by hand has it: the CLI makes the tar, timed.
        tar_path = Path(scratch) / "context.tar"
        with tar_path.open("wb") as out:
            context.write(out)
        directory = Path(scratch) / "context"
        with tarfile.open(tar_path) as tar:
            tar.extractall(directory, filter="tar")
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        started = time.perf_counter()
        subprocess.run(
            ["docker", "build", "--network", "none", "-q", "-t", tag, str(directory)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        built = time.perf_counter()
        subprocess.run(["docker", "push", "-q", tag], check=True, stdout=subprocess.DEVNULL)
        finished = time.perf_counter()
        return finished - started, {"build": built - started, "push": finished - built}


def checkout_of(clone_url: str, sha: str, directory: Path) -> Path:
    from workers.pipeline.fetch import git_environment

    env = git_environment(TOKEN)
    subprocess.run(["git", "init", "-q", str(directory)], check=True, env=env)
    for args in (
        ["remote", "add", "origin", clone_url],
        ["fetch", "-q", "--depth", "1", "origin", sha],
        ["checkout", "-q", sha],
    ):
        subprocess.run(["git", "-C", str(directory), *args], check=True, env=env)
    return directory


def one_round(server: object, registry: str, round_number: int, scratch: Path) -> Sample:
    from app.db import session_scope
    from app.models import Repository

    git = server  # tests.support.git_server.GitServer
    nonce = f"{RUN}-{round_number}"
    names = {side: f"bench/{side}-{nonce}" for side in ("cartridge", "manual")}
    shas: dict[str, tuple[str, str]] = {}
    for side, full_name in names.items():
        cold = git.commit(full_name, application(f"{side}-{nonce}"), executable=EXECUTABLES)  # type: ignore[attr-defined]
        warm = git.commit(full_name, {"app/model_7.rb": "class Model7; def x; end; end\n"})  # type: ignore[attr-defined]
        shas[side] = (cold, warm)
    with session_scope() as session:
        repository = Repository(
            full_name=names["cartridge"],
            clone_url=git.clone_url(names["cartridge"]),  # type: ignore[attr-defined]
            image_name=names["cartridge"].replace("/", "-"),
        )
        session.add(repository)
        session.flush()
        repository_id = repository.id

    manual_image = f"{registry}/{names['manual'].replace('/', '-')}"
    manual_url = git.clone_url(names["manual"])  # type: ignore[attr-defined]
    cold_sha, warm_sha = shas["manual"]
    cold_checkout = checkout_of(manual_url, cold_sha, scratch / f"cold-{round_number}")
    warm_checkout = checkout_of(manual_url, warm_sha, scratch / f"warm-{round_number}")

    # Alternate which side goes first, so neither always runs on a warmer machine.
    cold_tag, warm_tag = f"{manual_image}:{cold_sha}", f"{manual_image}:{warm_sha}"
    if round_number % 2:
        manual_cold, manual_steps_cold = manual_build(cold_checkout, cold_sha, cold_tag)
        cartridge_cold, steps_cold = cartridge_build(repository_id, shas["cartridge"][0])
        manual_warm, manual_steps_warm = manual_build(warm_checkout, warm_sha, warm_tag)
        cartridge_warm, steps_warm = cartridge_build(repository_id, shas["cartridge"][1])
    else:
        cartridge_cold, steps_cold = cartridge_build(repository_id, shas["cartridge"][0])
        manual_cold, manual_steps_cold = manual_build(cold_checkout, cold_sha, cold_tag)
        cartridge_warm, steps_warm = cartridge_build(repository_id, shas["cartridge"][1])
        manual_warm, manual_steps_warm = manual_build(warm_checkout, warm_sha, warm_tag)
    return Sample(
        cartridge_cold,
        manual_cold,
        cartridge_warm,
        manual_warm,
        steps_cold,
        steps_warm,
        manual_steps_cold,
        manual_steps_warm,
    )


def report(samples: list[Sample], load: tuple[float, float]) -> str:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    def outside_engine(total: float, steps: dict[str, float]) -> float:
        """Cartridge's own time: everything but the engine's build and push steps."""
        return total - steps.get("build", 0.0) - steps.get("push", 0.0)

    rows = []
    for kind in ("cold", "warm"):
        ours = [getattr(s, f"cartridge_{kind}") for s in samples]
        theirs = [getattr(s, f"manual_{kind}") for s in samples]
        own = [
            outside_engine(getattr(s, f"cartridge_{kind}"), getattr(s, f"steps_{kind}"))
            for s in samples
        ]
        paired = median([a / b for a, b in zip(ours, theirs, strict=True)])
        derived = (median(theirs) + median(own)) / median(theirs)
        rows.append((kind, median(ours), median(theirs), paired, median(own), derived))
    lines = [
        f"Rounds: {len(samples)}; medians. Machine: {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} before and {load[1]:.1f} after (other work shares this machine and its "
        "Docker engine).",
        "",
        "| build | Cartridge (s) | by hand (s) | ratio, paired | Cartridge outside the engine (s)"
        " | ratio, by hand + Cartridge's own time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, ours_median, theirs_median, paired, own_median, derived in rows:
        label = "cold" if kind == "cold" else "warm, one application file changed"
        lines.append(
            f"| {label} | {ours_median:.2f} | {theirs_median:.2f} | {paired:.2f}x | "
            f"{own_median:.2f} | {derived:.2f}x |"
        )
    cold_c = rows[0][1]
    warm_c = rows[1][1]
    lines += [
        "",
        f"Warm rebuild through Cartridge: {warm_c / cold_c:.0%} of the cold build.",
        "",
        "Per round (Cartridge cold / by hand cold / Cartridge warm / by hand warm, seconds):",
        "",
    ]
    for index, s in enumerate(samples, 1):
        lines.append(
            f"- round {index}: {s.cartridge_cold:.2f} / {s.manual_cold:.2f} / "
            f"{s.cartridge_warm:.2f} / {s.manual_warm:.2f}"
        )
    steps = sorted({name for s in samples for name in s.steps_cold})
    lines += ["", "Step timings (medians; Cartridge's from its build log):", ""]
    lines.append("| step | Cartridge cold | by hand cold | Cartridge warm | by hand warm |")
    lines.append("| --- | --- | --- | --- | --- |")
    for name in steps:
        cells = []
        for kind in ("cold", "warm"):
            for prefix in ("steps", "manual_steps"):
                values = [getattr(s, f"{prefix}_{kind}").get(name) for s in samples]
                known = [value for value in values if value is not None]
                cells.append(f"{median(known):.2f}" if known else "")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from tests.support import docker as docker_support
    from tests.support.git_server import serve_git
    from tests.support.registry import run_registry
    from tests.support.worker import run_worker

    admin(f'CREATE DATABASE "{DATABASE}"')
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        try:
            with (
                run_registry(scratch / "registry") as registry,
                serve_git(scratch / "git", TOKEN) as git,
            ):
                env = configure(scratch / "state", registry.host)
                from app import migrate

                migrate.upgrade(env["CARTRIDGE_DATABASE_URL"])
                queues = f"{env['CARTRIDGE_BUILD_QUEUE']},{env['CARTRIDGE_DEFAULT_QUEUE']}"
                with run_worker(env, scratch / "logs", queues=queues):
                    before = os.getloadavg()[0]
                    samples = [
                        one_round(git, registry.host, number, scratch)
                        for number in range(1, args.rounds + 1)
                    ]
                    after = os.getloadavg()[0]
                print(report(samples, (before, after)))
                docker_support.remove_images(f"{registry.host}/")
        finally:
            from app.db import reset_caches
            from app.outbox.relay import reset_relay

            reset_relay()
            reset_caches()
            admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


if __name__ == "__main__":
    main()
