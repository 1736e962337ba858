"""Statuses of builds driven through transition(), delivered by real Celery worker processes to
the fake GitHub: the exact sequence, ordering under concurrent updates, recovery from each
failure class."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.broker import get_celery
from app.builds.transitions import transition
from app.config import get_settings
from app.db import session_scope
from app.models import Build, BuildStatus, StatusPost
from app.models.base import utcnow
from tests.github.conftest import github_env, retry, supersede
from tests.support.fake_github import FakeGitHub
from tests.support.paths import REPO_ROOT

WORKER_READY_SECONDS = 60
DELIVERY_SECONDS = 30


@pytest.fixture(scope="module")
def worker_github(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeGitHub]:
    """A fake GitHub, and a Celery worker (3 processes) delivering statuses to it."""
    with FakeGitHub() as fake, github_env(fake):
        queue = get_settings().default_queue
        with get_celery().connection_for_write() as connection:
            # Messages published by earlier in-process tests name builds that no longer exist.
            connection.default_channel.queue_purge(queue)
        log_path = tmp_path_factory.mktemp("worker") / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker"),
                    *("-Q", queue, "--pool", "prefork", "--concurrency", "3"),
                    *("--hostname", f"statuses-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "INFO"),
                    *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                ],
                cwd=REPO_ROOT,
                env=dict(os.environ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_ready(worker, log_path)
            yield fake
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
            # Captured by pytest and shown with a failing test.
            print(f"--- statuses worker (last lines) ---\n{log_path.read_text()[-6000:]}")


def _wait_until_ready(worker: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + WORKER_READY_SECONDS
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{log_path.read_text()}")
        if b" ready." in log_path.read_bytes():
            return
        time.sleep(0.1)
    raise RuntimeError(f"the worker did not start:\n{log_path.read_text()}")


@pytest.fixture
def fake(worker_github: FakeGitHub) -> FakeGitHub:
    worker_github.reset()
    return worker_github


def _statuses(fake: FakeGitHub, build: Build) -> list[tuple[str, str | None]]:
    return [(s.state, s.description) for s in fake.statuses_for(build.sha)]


def _wait_for_statuses(fake: FakeGitHub, build: Build, count: int) -> None:
    fake.wait_for(lambda f: len(f.statuses_for(build.sha)) >= count, timeout=DELIVERY_SECONDS)


def _posts(build_id: int) -> list[StatusPost]:
    with session_scope() as session:
        query = select(StatusPost).where(StatusPost.build_id == build_id)
        return list(session.scalars(query.order_by(StatusPost.id)))


def _wait_for_posts(build_id: int, done: Callable[[list[StatusPost]], bool]) -> list[StatusPost]:
    deadline = time.monotonic() + DELIVERY_SECONDS
    while time.monotonic() < deadline:
        posts = _posts(build_id)
        if done(posts):
            return posts
        time.sleep(0.1)
    raise AssertionError([(p.id, p.state, p.send_state, p.last_error) for p in _posts(build_id)])


def _settled(posts: list[StatusPost]) -> bool:
    return bool(posts) and all(p.send_state != "queued" for p in posts)


def _finish(session: Session, build: Build, outcome: str) -> None:
    if outcome == "succeeded":
        finished = build.started_at + timedelta(minutes=1, seconds=23)  # type: ignore[operator]
        transition(session, build.id, BuildStatus.SUCCEEDED, finished_at=finished)
    elif outcome == "failed":
        transition(session, build.id, BuildStatus.FAILED, error="container/compile exited with 1")
    elif outcome == "errored":
        transition(session, build.id, BuildStatus.ERRORED, error="Docker engine unreachable")
    else:
        supersede(session, build)


@pytest.mark.parametrize(
    ("outcome", "final"),
    [
        ("succeeded", ("success", "Built in 1m 23s")),
        ("failed", ("failure", "container/compile exited with 1")),
        ("errored", ("error", "Docker engine unreachable")),
        ("cancelled", ("error", "Superseded by 1a2b3c4")),
    ],
)
def test_a_build_shows_queued_then_building_then_its_result(
    session: Session, fake: FakeGitHub, make_build_with_status, outcome: str, final: tuple[str, str]
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    _wait_for_statuses(fake, build, 1)
    transition(session, build.id, BuildStatus.RUNNING, build_host="host-2", started_at=utcnow())
    session.commit()
    _wait_for_statuses(fake, build, 2)
    _finish(session, build, outcome)
    session.commit()
    _wait_for_statuses(fake, build, 3)

    assert _statuses(fake, build) == [
        ("pending", "Queued"),
        ("pending", "Building on host-2"),
        final,
    ]
    assert {s.context for s in fake.statuses} == {"cartridge/build"}
    assert fake.rejections == []
    posts = _wait_for_posts(build.id, _settled)
    assert [p.send_state for p in posts] == ["sent"] * 3


def _drive(build_id: int, outcome: str, with_retry: bool, pause: Callable[[], None]) -> None:
    """One build's life, each transition in its own transaction, as workers would do it, with
    pauses so that deliveries of earlier statuses are still on their way."""
    with session_scope() as session:
        transition(session, build_id, BuildStatus.RUNNING, build_host="host-1", started_at=utcnow())
    pause()
    if with_retry:
        with session_scope() as session:
            transition(session, build_id, BuildStatus.ERRORED, error="lost the build host")
        pause()
        with session_scope() as session:
            retry(session, build_id)
        pause()
        with session_scope() as session:
            transition(session, build_id, BuildStatus.RUNNING, build_host="host-2")
        pause()
    with session_scope() as session:
        build = session.get(Build, build_id)
        assert build is not None
        _finish(session, build, outcome)


def test_concurrent_updates_never_reorder_or_regress_statuses(
    session: Session, fake: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    fake.latency_seconds = 0.3
    rng = random.Random(7)

    def pause() -> None:
        time.sleep(rng.uniform(0, 0.3))

    plans = [
        (
            make_build_with_status(),
            rng.choice(["succeeded", "failed", "errored", "cancelled"]),
            i % 2 == 0,
        )
        for i in range(8)
    ]
    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        drives = [
            pool.submit(_drive, build.id, outcome, with_retry, pause)
            for build, outcome, with_retry in plans
        ]
        for drive in drives:
            drive.result(timeout=60)

    for build, _outcome, with_retry in plans:
        posts = _wait_for_posts(build.id, _settled)
        recorded = [(p.state, p.description) for p in posts]
        received = _statuses(fake, build)
        # What GitHub received is the recorded sequence with gaps, in order, ending on the
        # build's final status; no pending ever came after the final status of its attempt.
        positions = _positions_in(recorded, received)
        assert positions == sorted(set(positions)), (recorded, received)
        assert received[-1] == recorded[-1], (recorded, received)
        assert recorded[-1][0] != "pending"
        assert [p.send_state for p in posts if p.send_state not in ("sent", "skipped")] == []
        assert posts[-1].attempt == (2 if with_retry else 1)
    assert fake.rejections == []


def _positions_in(
    recorded: list[tuple[str, str]], received: list[tuple[str, str | None]]
) -> list[int]:
    positions: list[int] = []
    start = 0
    for status in received:
        # Repeated values (say, "Queued" of two attempts) match the next occurrence.
        index = recorded.index(status, start) if status in recorded[start:] else -1
        positions.append(index)
        start = index + 1 if index >= 0 else start
    return positions


@pytest.mark.parametrize(
    ("failure", "answers"),
    [
        ("server error", [500, 500, 201]),
        ("timeout", [None, 201]),
        ("rate limit", [403, 201]),
        ("retry after", [429, 201]),
    ],
)
def test_a_delivery_recovers_from_each_transient_failure(
    session: Session,
    fake: FakeGitHub,
    make_build_with_status,
    failure: str,
    answers: list[int | None],
) -> None:  # type: ignore[no-untyped-def]
    not_before = 0.0
    if failure == "server error":
        fake.fail_next(500, times=2)
    elif failure == "timeout":
        fake.hang_next(3)
    elif failure == "rate limit":
        not_before = fake.rate_limit_next(reset_in=2)
    else:
        fake.secondary_rate_limit_next(retry_after=2)
        not_before = time.time() + 2
    build = make_build_with_status()
    _wait_for_statuses(fake, build, 1)

    assert _statuses(fake, build) == [("pending", "Queued")]
    assert [r.answered for r in fake.requests] == answers
    assert fake.statuses[0].received_at >= not_before
    [post] = _wait_for_posts(build.id, _settled)
    assert (post.send_state, post.tries, post.response_code) == ("sent", len(answers), 201)


def test_a_permanent_refusal_is_kept_and_the_build_goes_on(
    session: Session, fake: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    fake.fail_next(422, message="Validation Failed")
    build = make_build_with_status()
    [post] = _wait_for_posts(build.id, _settled)
    assert (post.send_state, post.response_code, post.last_error) == (
        "failed",
        422,
        "422 Validation Failed",
    )
    assert post.tries == 1

    assert transition(session, build.id, BuildStatus.RUNNING, build_host="host-4")
    session.commit()
    _wait_for_statuses(fake, build, 1)
    assert _statuses(fake, build) == [("pending", "Building on host-4")]
    session.expire_all()
    assert session.get(Build, build.id).status == "running"  # type: ignore[union-attr]
