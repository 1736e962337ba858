"""Real Celery worker processes building real repositories: the whole path from a queued build
(build row and outbox job, as the webhook receiver records them) to an image that runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK
from app.builds.lifecycle import transition
from app.config import get_settings
from app.models import Build, BuildStatus, Image, Repository
from app.models.base import utcnow
from app.outbox.service import enqueue
from tests.builds.helpers import COMPILE, log_of, reload, sample_files, wait_for
from tests.conftest import WEBHOOK_SECRET
from tests.support import docker as docker_support
from tests.support.github import ZERO_SHA, encode, push_payload, webhook_headers
from tests.support.registry import RunningRegistry
from tests.support.worker import WorkerProcess, run_worker

pytestmark = pytest.mark.e2e

PushCommit = Callable[..., str]
QueueBuild = Callable[[Repository, str], Build]
SLOW_COMPILE = "#!/bin/sh\necho compile started\nsleep {seconds}\necho compile done\n"


@pytest.fixture
def queues(set_build_env: Callable[..., None]) -> str:
    """Queues of this test only, so no other test's message reaches its workers."""
    run = uuid.uuid4().hex[:8]
    set_build_env(build_queue=f"builds-{run}", default_queue=f"cartridge-{run}")
    settings = get_settings()
    return f"{settings.build_queue},{settings.default_queue}"


@pytest.fixture
def queue_build(session: Session, queues: str) -> QueueBuild:
    def queue(repository: Repository, sha: str) -> Build:
        build = Build(repository_id=repository.id, sha=sha)
        session.add(build)
        session.flush()
        enqueue(session, BUILD_TASK, [build.id], queue=get_settings().build_queue)
        session.commit()
        return build

    return queue


@pytest.fixture
def worker(build_env: dict[str, str], queues: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    with run_worker(build_env, tmp_path, queues=queues) as process:
        yield process


def status_of(session: Session, build: Build) -> str:
    return reload(session, build).status


def compile_container(session: Session, build: Build) -> str:
    """The id of the container running container/compile, once the compile has started."""
    log = str(wait_for("the compile to start", lambda: _started(session, build)))
    return log.split('RUN ["/app/container/compile"]\n ---> Running in ')[1].split()[0]


def _started(session: Session, build: Build) -> str | None:
    log = log_of(session, build)
    return log if "compile started" in log else None


def test_a_queued_build_becomes_an_image_that_runs_its_web_role(
    session: Session,
    registry: RunningRegistry,
    sample_repository: Repository,
    push_commit: PushCommit,
    queue_build: QueueBuild,
    worker: WorkerProcess,
) -> None:
    sha = push_commit(sample_repository, sample_files())
    build = queue_build(sample_repository, sha)

    wait_for(
        "a green build", lambda: status_of(session, build) in {"succeeded", "failed", "errored"}
    )
    assert status_of(session, build) == "succeeded", log_of(session, build)

    image = session.scalars(select(Image).where(Image.build_id == build.id)).one()
    reference = f"{registry.host}/{sample_repository.image_name}@{image.manifest_digest}"
    docker_support.client().images.pull(reference)  # resolves the digest through the registry
    assert docker_support.run_once(reference, ["cat", "/app/REVISION"]).strip() == sha
    with docker_support.serving(reference, ["web"], 8000) as url:
        assert httpx.get(f"{url}/index.html").text == f"hello from {sha}\n"


def test_cancelling_a_running_build_stops_its_container(
    session: Session,
    sample_repository: Repository,
    push_commit: PushCommit,
    queue_build: QueueBuild,
    worker: WorkerProcess,
) -> None:
    slow = SLOW_COMPILE.format(seconds=120)
    build = queue_build(
        sample_repository, push_commit(sample_repository, sample_files({"container/compile": slow}))
    )
    container = compile_container(session, build)
    assert docker_support.container_running(container)

    # What the API's cancel (or a superseding push) does: a conditional status change.
    assert transition(
        session, build.id, BuildStatus.CANCELLED, cancel_reason="by octocat", finished_at=utcnow()
    )
    session.commit()

    wait_for("the container to stop", lambda: not docker_support.container_running(container), 15)
    wait_for(
        "the worker to stop", lambda: "==> stopped: cancelled: by octocat" in log_of(session, build)
    )
    assert status_of(session, build) == "cancelled"
    assert "compile done" not in log_of(session, build)
    workspace = get_settings().workspace_dir
    wait_for("the workspace to go", lambda: not list(workspace.glob(f"build-{build.id}-*")))

    # The worker is free again.
    fixed = push_commit(sample_repository, {"container/compile": COMPILE})
    quick = queue_build(sample_repository, fixed)
    wait_for("the next build", lambda: status_of(session, quick) == "succeeded")


def test_a_build_whose_worker_was_killed_is_retried_by_another_worker(
    session: Session,
    build_env: dict[str, str],
    queues: str,
    tmp_path: Path,
    sample_repository: Repository,
    push_commit: PushCommit,
    queue_build: QueueBuild,
) -> None:
    slow = SLOW_COMPILE.format(seconds=4)
    build = queue_build(
        sample_repository, push_commit(sample_repository, sample_files({"container/compile": slow}))
    )
    with run_worker(build_env, tmp_path, queues=queues, name="doomed") as doomed:
        container = compile_container(session, build)
        doomed.kill_everything()
    # The engine stops a build whose client went away: no orphaned compile keeps running.
    wait_for("the orphan to stop", lambda: not docker_support.container_running(container), 15)
    assert status_of(session, build) == "running"

    with run_worker(build_env, tmp_path, queues=queues, name="rescuer", beat=True):
        wait_for("the retried build", lambda: status_of(session, build) == "succeeded", 90)

    build = reload(session, build)
    assert (build.attempt, build.lease_retries) == (2, 1)
    assert "==> worker lost: no heartbeat from " in log_of(session, build, attempt=1)
    assert "compile done" in log_of(session, build, attempt=2)


def test_sigterm_finishes_the_running_build_and_takes_no_new_one(
    session: Session,
    sample_repository: Repository,
    push_commit: PushCommit,
    queue_build: QueueBuild,
    worker: WorkerProcess,
) -> None:
    slow = SLOW_COMPILE.format(seconds=3)
    first = queue_build(
        sample_repository, push_commit(sample_repository, sample_files({"container/compile": slow}))
    )
    compile_container(session, first)
    second = queue_build(sample_repository, push_commit(sample_repository, {"next.txt": "next"}))

    worker.terminate()

    assert worker.wait(timeout=60) == 0
    assert status_of(session, first) == "succeeded"
    assert status_of(session, second) == "queued"


def test_past_the_grace_period_a_stopping_worker_hands_its_build_back(
    session: Session,
    set_build_env: Callable[..., None],
    build_env: dict[str, str],
    queues: str,
    tmp_path: Path,
    sample_repository: Repository,
    push_commit: PushCommit,
    queue_build: QueueBuild,
) -> None:
    set_build_env(worker_grace_seconds="2")
    slow = SLOW_COMPILE.format(seconds=120)
    build = queue_build(
        sample_repository, push_commit(sample_repository, sample_files({"container/compile": slow}))
    )
    with run_worker(build_env, tmp_path, queues=queues) as worker:
        container = compile_container(session, build)
        worker.terminate()
        assert worker.wait(timeout=60) == 0

    assert not docker_support.container_running(container)
    build = reload(session, build)
    assert (build.status, build.attempt, build.lease_retries) == ("queued", 2, 0)
    assert "shutting down after its grace period; queued again as attempt 2" in log_of(
        session, build, attempt=1
    )


def test_a_newer_push_to_an_unprotected_branch_stops_the_running_build(
    session: Session,
    client: TestClient,
    sample_repository: Repository,
    push_commit: PushCommit,
    queues: str,
    worker: WorkerProcess,
) -> None:
    slow = SLOW_COMPILE.format(seconds=120)
    first = push_commit(
        sample_repository, sample_files({"container/compile": slow}), branch="feature"
    )
    running_id = deliver_push(client, sample_repository, first, before=ZERO_SHA)
    running_build = session.get_one(Build, running_id)
    container = compile_container(session, running_build)

    second = push_commit(sample_repository, {"container/compile": COMPILE}, branch="feature")
    newer_id = deliver_push(client, sample_repository, second, before=first)

    wait_for("the container to stop", lambda: not docker_support.container_running(container), 15)
    superseded = reload(session, running_build)
    assert superseded.status == "cancelled"
    assert superseded.cancel_reason == f"Superseded by {second[:7]}"
    newer = session.get_one(Build, newer_id)
    wait_for("the newer build", lambda: status_of(session, newer) == "succeeded")
    assert "compile done" not in log_of(session, superseded)


def deliver_push(client: TestClient, repository: Repository, sha: str, *, before: str) -> int:
    """A signed push of `sha` to the `feature` branch, as GitHub sends it; returns its build."""
    body = encode(
        push_payload(
            repository.full_name,
            ref="refs/heads/feature",
            after=sha,
            before=before,
            clone_url=repository.clone_url,
        )
    )
    answer = client.post(
        "/webhooks/github", content=body, headers=webhook_headers("push", body, WEBHOOK_SECRET)
    )
    assert answer.status_code in (200, 202), answer.text
    return int(answer.json()["build_id"])


NOISY_COMPILE = """#!/bin/sh
i=0
while [ $i -lt 60000 ]; do
  echo "output line $i of a compile that prints far more than the log keeps"
  i=$((i+1))
done
echo "the reason it failed: missing libfoo"
exit 3
"""


def test_a_compile_that_prints_past_the_log_cap_keeps_its_tail_and_fails_normally(
    session: Session,
    sample_repository: Repository,
    push_commit: PushCommit,
    queue_build: QueueBuild,
    set_build_env: Callable[..., None],
    build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    set_build_env(build_log_max_bytes=str(256 * 1024), build_log_tail_bytes=str(64 * 1024))
    sha = push_commit(sample_repository, sample_files({"container/compile": NOISY_COMPILE}))
    with run_worker(build_env, tmp_path, queues=f"{get_settings().build_queue}"):
        build = queue_build(sample_repository, sha)
        wait_for(
            "the build to end",
            lambda: (
                status_of(session, build) != "queued"
                and reload(session, build).finished_at is not None
            ),
            180,
        )
    log = log_of(session, build)
    assert status_of(session, build) == "failed", log
    markers = [line for line in log.splitlines() if line.startswith("==> log cap reached: ")]
    assert len(markers) == 1, log[-2000:]
    assert "CARTRIDGE_BUILD_LOG_MAX_BYTES" in markers[0]
    head, tail = log.split(markers[0])
    assert "output line 0 of" in head
    assert "the reason it failed: missing libfoo" in tail
    assert "output line 59999 of" in tail
    assert tail.rstrip().splitlines()[-1].startswith("==> failed: ")
    assert len(log.encode()) <= 256 * 1024 + len(markers[0]) + 1
