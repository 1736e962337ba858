"""A registry replica that is down while a build copies its image does not fail the build for
good: the build waits for the replica quorum, with a deadline, and the repair job's success makes
it green. Real registries (one stopped and started again), the real build task."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.builds.leases import reap_expired_leases
from app.config import get_settings
from app.main import create_app
from app.models import Build, BuildStatus, Registry, Repository, StatusPost
from app.models.base import utcnow
from tests.builds.helpers import log_of, reload, sample_files
from tests.support.registry import RunningRegistry, run_registry

pytestmark = pytest.mark.e2e


@pytest.fixture
def far_replica(tmp_path: Path) -> Iterator[RunningRegistry]:
    with run_registry(tmp_path / "far") as running:
        yield running


@pytest.fixture
def replicas(
    session: Session,
    registry: RunningRegistry,
    far_replica: RunningRegistry,
    set_build_env: Callable[..., None],
) -> list[Registry]:
    """Two required replicas: the one builds push to, and one that is down during the copy.
    Statuses are recorded (a token is configured) so that the test can read what GitHub owes."""
    set_build_env(github_token="ghp_test_token", github_api_url="http://127.0.0.1:9")
    rows = [
        Registry(name="near", url=registry.host, required=True),
        Registry(name="far", url=far_replica.host, required=True),
    ]
    session.add_all(rows)
    session.commit()
    far_replica.stop()
    return rows


@pytest.fixture
def tasks(build_env: dict[str, str]):  # type: ignore[no-untyped-def]
    import workers.replication

    return workers.replication


def _states(session: Session, build: Build) -> list[tuple[str, str]]:
    session.expire_all()
    posts = session.scalars(
        select(StatusPost).where(StatusPost.build_id == build.id).order_by(StatusPost.id)
    )
    return [(post.state, post.description) for post in posts]


def _built(
    session: Session,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    make_build: Callable[[Repository, str], Build],
    run_build: Callable[[int], str],
) -> Build:
    build = make_build(sample_repository, push_commit(sample_repository, sample_files()))
    assert run_build(build.id) == "waiting for replicas"
    return reload(session, build)


def test_a_build_waits_for_its_replicas_and_turns_green_when_the_repair_succeeds(
    session: Session,
    replicas: list[Registry],
    far_replica: RunningRegistry,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    make_build: Callable[[Repository, str], Build],
    run_build: Callable[[int], str],
    set_build_env: Callable[..., None],
    tasks,  # type: ignore[no-untyped-def]
) -> None:
    set_build_env(replica_quorum_wait_seconds="600")
    client = TestClient(create_app())
    build = _built(session, sample_repository, push_commit, make_build, run_build)

    assert build.status == BuildStatus.RUNNING
    assert build.quorum_deadline_at is not None
    assert build.quorum_deadline_at > utcnow()
    assert build.lease_expires_at is None
    assert "waiting until" in log_of(session, build)
    assert _states(session, build)[-1] == (
        "pending",
        "Built; waiting for the image to reach enough registry replicas",
    )
    detail = client.get(f"/api/v1/builds/{build.id}").json()
    assert detail["status"] == "running"
    assert detail["quorum_deadline_at"] is not None
    # No worker holds it, and the lease reaper leaves it alone.
    assert reap_expired_leases(session, get_settings()).requeued == []
    session.commit()
    # While the replica is down, health checks keep it waiting.
    tasks.check_replicas()
    assert reload(session, build).status == BuildStatus.RUNNING

    far_replica.start()
    tasks.check_replicas()
    assert tasks.repair_replica(replicas[1].id) == 1

    green = reload(session, build)
    assert green.status == BuildStatus.SUCCEEDED, log_of(session, build)
    assert (green.quorum_deadline_at, green.error) == (None, None)
    assert "==> replica quorum met" in log_of(session, build)
    state, description = _states(session, build)[-1]
    assert state == "success"
    assert description.startswith("Built in ")


def test_a_build_whose_replicas_miss_the_deadline_is_errored_with_their_report(
    session: Session,
    replicas: list[Registry],
    far_replica: RunningRegistry,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    make_build: Callable[[Repository, str], Build],
    run_build: Callable[[int], str],
    set_build_env: Callable[..., None],
    tasks,  # type: ignore[no-untyped-def]
) -> None:
    set_build_env(replica_quorum_wait_seconds="2")
    build = _built(session, sample_repository, push_commit, make_build, run_build)
    tasks.check_replicas()
    assert reload(session, build).status == BuildStatus.RUNNING  # before the deadline

    time.sleep(2.5)
    tasks.check_replicas()
    errored = reload(session, build)
    assert errored.status == BuildStatus.ERRORED
    assert errored.error is not None
    assert errored.error.startswith("image not verified on enough replicas by the deadline")
    assert "near: verified" in errored.error
    assert "far: missing" in errored.error
    assert _states(session, build)[-1][0] == "error"

    # The replica comes back and is repaired; the build stays as it ended.
    far_replica.start()
    tasks.check_replicas()
    assert tasks.repair_replica(replicas[1].id) == 1
    assert reload(session, build).status == BuildStatus.ERRORED


def test_without_a_wait_a_missed_quorum_errors_the_build_at_once(
    session: Session,
    replicas: list[Registry],
    sample_repository: Repository,
    push_commit: Callable[..., str],
    make_build: Callable[[Repository, str], Build],
    run_build: Callable[[int], str],
    set_build_env: Callable[..., None],
) -> None:
    set_build_env(replica_quorum_wait_seconds="0")
    build = make_build(sample_repository, push_commit(sample_repository, sample_files()))
    assert run_build(build.id) == "errored"
    error = reload(session, build).error or ""
    assert error.startswith("image not verified on enough replicas")
