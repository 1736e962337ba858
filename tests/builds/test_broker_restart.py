"""A Redis restart with build jobs in it loses no build: real Redis (the test's own, restarted),
real webhooks, a real worker building real repositories."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK, get_celery, jobs_waiting
from app.config import get_settings
from app.models import Build, BuildStatus, Repository
from app.outbox.relay import reset_relay
from tests.builds.helpers import log_of, sample_files, wait_for
from tests.conftest import WEBHOOK_SECRET
from tests.support.github import ZERO_SHA, encode, push_payload, webhook_headers
from tests.support.redis_server import RedisServer, redis_server
from tests.support.worker import run_worker

pytestmark = pytest.mark.e2e

BUILDS = 6
TIMEOUT_SECONDS = 3


@pytest.fixture
def own_redis(
    tmp_path: Path, set_build_env: Callable[..., None], build_env: dict[str, str]
) -> Iterator[RedisServer]:
    """This test's broker; the API in this process and the worker both use it."""
    with redis_server(tmp_path / "redis") as server:
        run = uuid.uuid4().hex[:8]
        set_build_env(
            broker_url=server.url,
            build_queue=f"builds-{run}",
            default_queue=f"cartridge-{run}",
            queued_job_timeout_seconds=str(TIMEOUT_SECONDS),
            redispatch_interval_seconds="1",
        )
        get_celery.cache_clear()
        reset_relay()
        try:
            yield server
        finally:
            reset_relay()
            get_celery.cache_clear()


def test_every_build_queued_before_a_redis_restart_reaches_a_final_state(
    session: Session,
    client: TestClient,
    own_redis: RedisServer,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    # Pushes arrive while no worker runs: GitHub gets 2xx, the jobs wait in Redis.
    build_ids = []
    for n in range(BUILDS):
        sha = push_commit(sample_repository, sample_files({"README.md": f"change {n}\n"}))
        build_ids.append(_push(client, sample_repository, sha, branch=f"topic-{n}"))
    settings = get_settings()
    wait_for(
        "the jobs in Redis",
        lambda: jobs_waiting(settings, BUILD_TASK, settings.build_queue) == set(build_ids),
        20,
    )

    own_redis.restart()
    restarted = time.monotonic()
    assert jobs_waiting(settings, BUILD_TASK, settings.build_queue) == set()

    queues = f"{settings.build_queue},{settings.default_queue}"
    with run_worker(build_env, tmp_path / "worker", queues=queues, beat=True):

        def final() -> list[Build]:
            session.expire_all()
            builds = session.scalars(select(Build).where(Build.id.in_(build_ids))).all()
            return [b for b in builds if b.status.is_final]

        wait_for("the first build to start", lambda: _started(session, build_ids), 60)
        first_start = time.monotonic() - restarted
        wait_for("every build to end", lambda: len(final()) == BUILDS, 60 * BUILDS)

    builds = {b.id: b for b in final()}
    assert sorted(builds) == sorted(build_ids)  # 100 %
    for build in builds.values():
        assert build.status == BuildStatus.SUCCEEDED, log_of(session, build)
        assert build.attempt == 1
        assert build.redispatches >= 1  # its lost job was sent again
    # The bound: timeout plus one check interval, plus a worker's start and a claim.
    print(f"first build started {first_start:.1f}s after the restart")
    assert first_start < 60


def _started(session: Session, build_ids: list[int]) -> bool:
    session.expire_all()
    started = session.scalars(
        select(Build.id).where(Build.id.in_(build_ids), Build.started_at.is_not(None))
    ).all()
    return bool(started)


def _push(client: TestClient, repository: Repository, sha: str, *, branch: str) -> int:
    """A signed push creating `branch` at `sha`, as GitHub sends it; returns its build."""
    body = encode(
        push_payload(
            repository.full_name,
            ref=f"refs/heads/{branch}",
            after=sha,
            before=ZERO_SHA,
            clone_url=repository.clone_url,
        )
    )
    headers = webhook_headers("push", body, WEBHOOK_SECRET)
    answer = client.post("/webhooks/github", content=body, headers=headers)
    assert answer.status_code in (200, 202), answer.text
    return int(answer.json()["build_id"])
