"""Build steps that exceed their limits on the real engine: each fails the build with a message
naming the limit and the setting that raises it, and the next build on the host is unaffected."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import Build, Repository
from tests.builds.assembly import assemble, write_tree
from tests.builds.helpers import log_of, reload, sample_files
from tests.support import docker as docker_support
from workers.pipeline.outcomes import BuildFailed

PushCommit = Callable[..., str]
MakeBuild = Callable[[Repository, str], Build]
RunBuild = Callable[[int], str]

# dd reads its whole block into memory: a 256 MiB block needs 256 MiB.
EAT_MEMORY = "#!/bin/sh\nset -e\necho eating memory\ndd if=/dev/zero of=/dev/null bs=256M count=1\n"
# A fork bomb: every process forks in a loop, and dies when a fork is refused. The step's main
# process becomes a `sleep` (exec: no fork needed), so the step lives on as a bomb's host would.
# Its memory and CPU limits keep the test host safe should the process limit fail.
FORK_BOMB = """#!/bin/sh
exec 2>/dev/null
echo forking
bomb() { while :; do bomb & done; }
bomb &
exec sleep 120
"""
ONE_BIG_FILE = "#!/bin/sh\nset -e\ndd if=/dev/zero of=/tmp/big bs=1M count=200\n"
# Small files, none near the limit on its own; then the step would go on (and succeed).
MANY_FILES = """#!/bin/sh
set -e
i=0
while [ $i -lt 40 ]; do
  dd if=/dev/zero of=/tmp/part-$i bs=1M count=4 2>/dev/null
  i=$((i + 1))
done
echo wrote 160 MiB
sleep 30
"""


def _build(
    session: Session,
    run_build: RunBuild,
    repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
    changes: dict[str, str],
) -> Build:
    sha = push_commit(repository, sample_files(changes))
    build = make_build(repository, sha)
    run_build(build.id)
    return reload(session, build)


def _next_build_succeeds(
    session: Session,
    run_build: RunBuild,
    repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
    remove: tuple[str, ...] = (),
) -> None:
    """The sample application, pushed again, builds on the same host and worker."""
    sha = push_commit(repository, sample_files(), remove=remove)
    build = make_build(repository, sha)
    run_build(build.id)
    build = reload(session, build)
    assert (build.status, build.error) == ("succeeded", None)


@pytest.mark.parametrize("script", ["container/compile", "container/dependencies"])
def test_a_step_over_its_memory_limit_fails_as_out_of_memory(
    session: Session,
    run_build: RunBuild,
    set_build_env: Callable[..., None],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
    script: str,
) -> None:
    set_build_env(build_memory="64m")
    changes = {script: EAT_MEMORY}
    if script == "container/dependencies":
        changes["Gemfile.lock"] = "rails\n"

    build = _build(session, run_build, sample_repository, push_commit, make_build, changes)

    assert build.status == "failed"
    assert build.error == f"{script} ran out of memory (limit 64 MiB, CARTRIDGE_BUILD_MEMORY)"
    log = log_of(session, build)
    assert "eating memory" in log
    assert "limits: memory 64 MiB, no swap, 2 CPUs, 1024 processes" in log
    assert "status 137" not in build.error
    # The worker (this process) lives on, and the host builds the next commit as usual.
    added = tuple(path for path in changes if path not in sample_files())
    _next_build_succeeds(session, run_build, sample_repository, push_commit, make_build, added)


def test_a_fork_bomb_stops_at_the_repositorys_process_limit(
    session: Session,
    run_build: RunBuild,
    set_build_env: Callable[..., None],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    sample_repository.build_limits = {"pids": 64, "memory": 128 << 20, "cpus": 0.5}
    session.commit()
    set_build_env(build_timeout_seconds="60")

    build = _build(
        session,
        run_build,
        sample_repository,
        push_commit,
        make_build,
        {"container/compile": FORK_BOMB},
    )

    assert build.status == "failed"
    assert build.error == (
        "container/compile reached the process limit (limit 64 processes and threads, "
        "the repository's build_limits.pids)"
    )
    assert "forking" in log_of(session, build)
    sample_repository.build_limits = None
    session.commit()
    _next_build_succeeds(session, run_build, sample_repository, push_commit, make_build)


@pytest.mark.parametrize(
    ("compile_script", "written"),
    [(ONE_BIG_FILE, "wrote 64 MiB"), (MANY_FILES, "wrote ")],
    ids=["one-big-file", "many-files"],
)
def test_a_step_writing_past_its_disk_limit_fails_naming_it(
    session: Session,
    run_build: RunBuild,
    set_build_env: Callable[..., None],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
    compile_script: str,
    written: str,
) -> None:
    set_build_env(build_disk="64m", build_limit_poll_seconds="0.5")

    build = _build(
        session,
        run_build,
        sample_repository,
        push_commit,
        make_build,
        {"container/compile": compile_script},
    )

    assert build.status == "failed"
    assert build.error is not None
    assert build.error.startswith(f"container/compile exceeded the disk limit ({written}")
    assert build.error.endswith(", limit 64 MiB, CARTRIDGE_BUILD_DISK)")
    _next_build_succeeds(session, run_build, sample_repository, push_commit, make_build)


# What a step's container is given, as the step itself sees it (cgroup v1 or v2 files).
REPORT_LIMITS = """#!/bin/sh
step=$(basename "$0")
first() { for f in "$@"; do [ -r "$f" ] && { cat "$f"; return; }; done; echo unknown; }
echo "$step memory: $(first /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes)"
echo "$step cpu: $(first /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
echo "$step file size blocks: $(ulimit -f)"
i=0
pids=max
while [ $i -lt 50 ]; do
  pids=$(first /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max)
  [ "$pids" != max ] && break
  sleep 0.1
  i=$((i + 1))
done
echo "$step pids: $pids"
"""


def test_every_step_runs_within_the_limits(
    session: Session,
    run_build: RunBuild,
    build_env: dict[str, str],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    sample_repository.build_limits = {
        "memory": 256 << 20,
        "cpus": 0.5,
        "pids": 100,
        "disk": 32 << 20,
    }
    session.commit()
    changes = {
        "container/compile": REPORT_LIMITS,
        "container/dependencies": REPORT_LIMITS,
        # Unique, so that no earlier build's cached layer stands in for the step.
        "Gemfile.lock": f"rails ({uuid.uuid4().hex})\n",
    }

    build = _build(session, run_build, sample_repository, push_commit, make_build, changes)

    assert (build.status, build.error) == ("succeeded", None), log_of(session, build)
    lines = set(log_of(session, build).splitlines())
    for step in ("dependencies", "compile"):
        assert f"{step} memory: {256 << 20}" in lines
        assert f"{step} cpu: 50000" in lines or f"{step} cpu: 50000 100000" in lines
        assert f"{step} file size blocks: {(32 << 20) // 512}" in lines
        assert f"{step} pids: 100" in lines


def test_a_role_started_for_its_smoke_check_runs_within_the_limits(
    tmp_path: Path, base_image: str
) -> None:
    """The smoke check runs the repository's code too: a role that eats memory at boot is
    stopped by the build's memory limit, and the build says so."""
    roles = {
        "web": {
            "command": "dd if=/dev/zero of=/dev/null bs=256M count=1 && exec sleep 1000",
            "smoke": {"exec": "true", "within_seconds": 20},
        }
    }
    checkout = write_tree(
        tmp_path / "checkout",
        {"container/compile": "#!/bin/sh\n", "container/roles.json": json.dumps(roles)},
    )
    settings = Settings(state_dir=tmp_path / "state", build_network="none", build_memory="64m")
    tag = f"cartridge-test/limits-{uuid.uuid4().hex[:12]}:latest"
    try:
        with pytest.raises(BuildFailed) as failed:
            assemble(checkout, settings, base_image=base_image, out=io.StringIO(), tag=tag)
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_support.client().images.remove(tag, force=True)
    assert failed.value.message == (
        "role web, during its smoke check, ran out of memory (limit 64 MiB, CARTRIDGE_BUILD_MEMORY)"
    )
