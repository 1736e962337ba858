"""Build jobs reach the broker after the commit, and again after the broker was down."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK, get_celery
from app.config import get_settings
from app.db import get_session_factory, reset_caches
from app.main import create_app
from app.models import Build, OutboxMessage
from app.outbox.relay import reset_relay
from app.outbox.service import relay_pending
from tests.conftest import REDIS_URL, WEBHOOK_SECRET
from tests.support.github import encode, push_payload, webhook_headers
from tests.support.server import free_port

SHA = "ab" * 20


@pytest.fixture
def build_queue(database_url: str) -> Iterator[str]:
    queue = get_settings().build_queue
    connection = redis.Redis.from_url(REDIS_URL)
    connection.delete(queue)
    yield queue
    connection.delete(queue)
    reset_relay()


def queued_build_jobs(queue: str) -> list[list[Any]]:
    """The args of every build job waiting in the Redis list kombu publishes `queue` to."""
    jobs = []
    for raw in redis.Redis.from_url(REDIS_URL).lrange(queue, 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == BUILD_TASK:
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            jobs.append(args)
    return jobs


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def outbox_rows(session: Session) -> list[OutboxMessage]:
    session.expire_all()
    return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def deliver_push(client: TestClient) -> int:
    body = encode(push_payload("octo/app", after=SHA))
    headers = webhook_headers("push", body, WEBHOOK_SECRET)
    response = client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 200, response.text
    build_id: int = response.json()["build_id"]
    return build_id


def point_broker_at(url: str) -> None:
    os.environ["CARTRIDGE_BROKER_URL"] = url
    reset_relay()
    reset_caches()
    get_celery.cache_clear()


class RedisThatComesBack:
    """A port that refuses connections until `start()`, then forwards them to the real Redis:
    the broker going away and returning at the same address."""

    def __init__(self) -> None:
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def close(self) -> None:
        for sock in [self._listener, *self._sockets]:
            if sock is not None:
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        target = redis.Redis.from_url(REDIS_URL).connection_pool.connection_kwargs
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((target["host"], target["port"]))
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()


def test_a_webhook_reaches_the_build_queue_without_a_manual_relay(
    client: TestClient, make_repository, session: Session, build_queue: str
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    build_id = deliver_push(client)

    assert wait_for(lambda: queued_build_jobs(build_queue) == [[build_id]])
    assert wait_for(lambda: outbox_rows(session)[0].dispatched_at is not None)


@pytest.fixture
def broker_down(database_url: str, build_queue: str) -> Iterator[RedisThatComesBack]:
    real_url = os.environ["CARTRIDGE_BROKER_URL"]
    broker = RedisThatComesBack()
    point_broker_at(broker.url)
    try:
        yield broker
    finally:
        broker.close()
        point_broker_at(real_url)


def _undispatched_after_a_failed_attempt(session: Session) -> OutboxMessage:
    # The relay thread tries at once after the commit; wait until that attempt has failed.
    assert wait_for(lambda: outbox_rows(session)[0].attempts >= 1)
    (row,) = outbox_rows(session)
    assert row.dispatched_at is None
    assert row.last_error
    return row


def _relay_pending_now() -> int:
    with get_session_factory()() as session:
        return relay_pending(session, get_celery())


def _periodic_relay_task() -> int:
    from workers.maintenance import relay_outbox

    sent: int = relay_outbox()  # the task body, as the beat schedule runs it
    return sent


@pytest.mark.parametrize("relay", [_relay_pending_now, _periodic_relay_task])
def test_with_the_broker_down_a_webhook_commits_and_the_relay_sends_it_later(
    broker_down: RedisThatComesBack,
    make_repository,
    session: Session,
    build_queue: str,
    relay: Callable[[], int],
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    with TestClient(create_app()) as client:
        build_id = deliver_push(client)
    assert session.get(Build, build_id) is not None
    row = _undispatched_after_a_failed_attempt(session)
    assert queued_build_jobs(build_queue) == []

    point_broker_at(REDIS_URL)  # the broker is back
    assert relay() == 1

    assert queued_build_jobs(build_queue) == [[build_id]]
    session.expire_all()
    assert session.get(OutboxMessage, row.id).dispatched_at is not None  # type: ignore[union-attr]
    assert relay() == 0  # nothing is sent twice


def test_with_the_broker_down_the_live_apps_relay_sweeps_when_it_returns(
    broker_down: RedisThatComesBack, make_repository, session: Session, build_queue: str
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    with TestClient(create_app()) as client:
        build_id = deliver_push(client)
        _undispatched_after_a_failed_attempt(session)

        broker_down.start()  # same address, nothing restarted

        assert wait_for(lambda: queued_build_jobs(build_queue) == [[build_id]])
        assert wait_for(lambda: outbox_rows(session)[0].dispatched_at is not None)


def test_jobs_held_back_by_a_broker_outage_are_sent_together_once_it_returns(
    broker_down: RedisThatComesBack, make_repository, session: Session, build_queue: str
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    shas = [f"{index:02d}" * 20 for index in range(1, 4)]
    with TestClient(create_app()) as client:
        build_ids = []
        for index, sha in enumerate(shas):
            body = encode(push_payload("octo/app", ref=f"refs/heads/b{index}", after=sha))
            response = client.post(
                "/webhooks/github",
                content=body,
                headers=webhook_headers("push", body, WEBHOOK_SECRET),
            )
            build_ids.append(response.json()["build_id"])
    assert wait_for(lambda: outbox_rows(session)[0].attempts >= 1)
    # A batch that fails is not half-counted: no row is marked sent.
    assert _relay_pending_now() == 0
    assert all(row.dispatched_at is None for row in outbox_rows(session))

    point_broker_at(REDIS_URL)
    assert _relay_pending_now() == 3

    assert sorted(queued_build_jobs(build_queue)) == [[build_id] for build_id in sorted(build_ids)]
    assert all(row.dispatched_at is not None for row in outbox_rows(session))
    assert _relay_pending_now() == 0
