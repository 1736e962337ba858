"""Queued builds whose job the broker lost are dispatched again; a backlog the broker still holds
is left alone. Real PostgreSQL, real Redis (this run's own queues), real Celery messages."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK, jobs_waiting
from app.builds import lifecycle
from app.builds.redispatch import redispatch_lost
from app.cli.main import cli
from app.config import get_settings
from app.models import Build, BuildStatus, OutboxMessage, Repository
from app.models.base import utcnow
from app.outbox.relay import reset_relay
from tests.conftest import REDIS_URL
from tests.support.server import serve

TIMEOUT = 60.0


@pytest.fixture
def build_queue(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CARTRIDGE_BUILD_QUEUE", f"builds-redispatch-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("CARTRIDGE_QUEUED_JOB_TIMEOUT_SECONDS", str(TIMEOUT))
    get_settings.cache_clear()
    reset_relay()
    queue = get_settings().build_queue
    yield queue
    redis.Redis.from_url(REDIS_URL).delete(queue)
    reset_relay()
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def queue_builds(
    session: Session, make_repository: Callable[..., Repository], build_queue: str
) -> Callable[[int], list[int]]:
    """Queues `count` builds as pushes do, publishes their jobs to Redis, and backdates them by
    twice the timeout."""

    def queue(count: int) -> list[int]:
        repository = make_repository(f"octo/{uuid.uuid4().hex[:8]}")
        ids = [
            lifecycle.build_sha(session, repository.id, uuid.uuid4().hex + "0" * 8).id
            for _ in range(count)
        ]
        session.commit()
        _wait_until_sent(session)
        _backdate(session, ids, 2 * TIMEOUT)
        return ids

    return queue


def _backdate(session: Session, ids: list[int], seconds: float) -> None:
    """Makes the builds look queued `seconds` ago."""
    session.execute(
        update(Build)
        .where(Build.id.in_(ids))
        .values(queued_at=utcnow() - timedelta(seconds=seconds))
    )
    session.commit()


def _wait_until_sent(session: Session) -> None:
    """The relay thread publishes what a commit enqueued, once."""
    deadline = time.monotonic() + 20
    while _unsent_jobs(session):
        assert time.monotonic() < deadline, "outbox not relayed"
        time.sleep(0.05)


def _waiting(queue: str) -> list[int]:
    """Build ids of the jobs waiting in the queue, one per message."""
    ids = []
    for raw in redis.Redis.from_url(REDIS_URL).lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return sorted(ids)


def _unsent_jobs(session: Session) -> list[int]:
    session.expire_all()
    rows = session.scalars(
        select(OutboxMessage.args).where(
            OutboxMessage.task_name == BUILD_TASK, OutboxMessage.dispatched_at.is_(None)
        )
    )
    return sorted(args[0] for args in rows)


def _lose_the_queue(queue: str) -> None:
    """What a restart of a Redis that keeps nothing on disk does to the queue."""
    redis.Redis.from_url(REDIS_URL).delete(queue)


def test_the_broker_is_read_for_the_jobs_waiting_in_a_queue(
    queue_builds: Callable[[int], list[int]], build_queue: str
) -> None:
    ids = queue_builds(3)
    assert jobs_waiting(get_settings(), BUILD_TASK, build_queue) == set(ids)
    assert jobs_waiting(get_settings(), "cartridge.other", build_queue) == set()
    _lose_the_queue(build_queue)
    assert jobs_waiting(get_settings(), BUILD_TASK, build_queue) == set()


def test_a_lost_job_is_sent_again_once_and_then_less_and_less_often(
    session: Session, queue_builds: Callable[[int], list[int]], build_queue: str
) -> None:
    [lost, kept] = queue_builds(2)
    redis.Redis.from_url(REDIS_URL).lrem(build_queue, 0, _raw_job(build_queue, lost))
    assert jobs_waiting(get_settings(), BUILD_TASK, build_queue) == {kept}

    assert redispatch_lost(session, get_settings()) == [lost]
    assert _unsent_jobs(session) == [lost]
    session.commit()
    _wait_until_sent(session)
    assert _waiting(build_queue) == sorted([lost, kept])
    build = session.get_one(Build, lost)
    assert (build.status, build.attempt, build.redispatches) == (BuildStatus.QUEUED, 1, 1)
    assert build.redispatched_at is not None

    # Its new job is in the broker: nothing more to do, however often asked.
    assert redispatch_lost(session, get_settings()) == []
    _lose_the_queue(build_queue)
    now = utcnow()
    # Lost again: sent again after twice the timeout, not after one.
    later = now + timedelta(seconds=1.5 * TIMEOUT)
    assert redispatch_lost(session, get_settings(), now=later) == [kept]
    session.commit()
    _wait_until_sent(session)
    much_later = now + timedelta(seconds=2.5 * TIMEOUT)
    _lose_the_queue(build_queue)
    assert redispatch_lost(session, get_settings(), now=much_later) == [lost]


def _raw_job(queue: str, build_id: int) -> bytes:
    connection = redis.Redis.from_url(REDIS_URL)
    for raw in connection.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        if message["headers"]["task"] == BUILD_TASK and args == [build_id]:
            return bytes(raw)
    raise AssertionError(f"no job for build {build_id}")


def test_young_builds_and_jobs_still_in_the_outbox_are_left_alone(
    session: Session, queue_builds: Callable[[int], list[int]], build_queue: str
) -> None:
    [young, unsent] = queue_builds(2)
    _backdate(session, [young], 0)  # queued just now
    [message_id] = [
        message.id for message in session.scalars(select(OutboxMessage)) if message.args == [unsent]
    ]
    session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id).values(dispatched_at=None)
    )
    session.commit()
    _lose_the_queue(build_queue)
    assert redispatch_lost(session, get_settings()) == []


def test_a_backlog_the_broker_holds_is_not_sent_again_and_a_lost_one_is_sent_once(
    session: Session, queue_builds: Callable[[int], list[int]], build_queue: str
) -> None:
    ids = queue_builds(1000)
    for _ in range(3):
        assert redispatch_lost(session, get_settings()) == []
    session.commit()
    assert _unsent_jobs(session) == []
    assert redis.Redis.from_url(REDIS_URL).llen(build_queue) == 1000

    _lose_the_queue(build_queue)
    assert redispatch_lost(session, get_settings()) == ids
    session.commit()
    _wait_until_sent(session)
    assert _waiting(build_queue) == ids
    for _ in range(3):
        assert redispatch_lost(session, get_settings()) == []
    total = session.scalar(select(func.sum(Build.redispatches)).where(Build.id.in_(ids)))
    assert total == 1000


def test_nothing_is_sent_while_the_broker_does_not_answer(
    session: Session,
    queue_builds: Callable[[int], list[int]],
    build_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue_builds(2)
    _lose_the_queue(build_queue)
    monkeypatch.setenv("CARTRIDGE_BROKER_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    assert redispatch_lost(session, get_settings()) == []
    assert _unsent_jobs(session) == []


def test_retry_of_a_queued_build_sends_its_job_again_once_it_has_waited(
    session: Session,
    client: TestClient,
    auth: dict[str, str],
    queue_builds: Callable[[int], list[int]],
    build_queue: str,
) -> None:
    [old, young] = queue_builds(2)
    _backdate(session, [young], TIMEOUT - 5)

    refused = client.post(f"/api/v1/builds/{young}/retry", headers=auth)
    assert refused.status_code == 409
    assert "once it has waited 60s" in refused.json()["error"]["message"]

    # The operator forces it, whether or not the broker still holds the job.
    answer = client.post(f"/api/v1/builds/{old}/retry", headers=auth)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["attempt"]) == ("queued", 1)
    _wait_until_sent(session)
    assert _waiting(build_queue) == sorted([old, old, young])
    assert client.post(f"/api/v1/builds/{old}/retry", headers=auth).status_code == 409


def test_the_cli_redispatches_lost_jobs_now(
    session: Session,
    app,  # type: ignore[no-untyped-def]
    write_token: str,
    queue_builds: Callable[[int], list[int]],
    build_queue: str,
) -> None:
    ids = queue_builds(2)
    _lose_the_queue(build_queue)
    with serve(app) as api_url:
        env = {"CARTRIDGE_API_URL": api_url, "CARTRIDGE_TOKEN": write_token}
        result = CliRunner().invoke(cli, ["builds", "redispatch"], env=env)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"dispatched again: {ids[0]}, {ids[1]}"
        again = CliRunner().invoke(cli, ["builds", "redispatch", "--json"], env=env)
    assert again.exit_code == 0, again.output
    assert '"build_ids": []' in again.output
    _wait_until_sent(session)
    assert _waiting(build_queue) == ids
