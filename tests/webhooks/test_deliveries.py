"""Deliveries: events, headers, redelivery, unknown repositories, body limits, concurrency."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Build, Push, Repository, WebhookDelivery
from tests.conftest import WEBHOOK_SECRET
from tests.support.github import encode, load_payload, push_payload, webhook_headers
from tests.support.server import serve
from tests.webhooks.conftest import Deliver

SHA_A = "a1" * 20
NOTHING = {"webhook_deliveries": 0, "pushes": 0, "builds": 0, "outbox": 0}


@pytest.fixture
def small_body_limit(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[int]:
    monkeypatch.setenv("CARTRIDGE_WEBHOOK_MAX_BODY_BYTES", "1000")
    get_settings.cache_clear()
    yield 1000
    monkeypatch.delenv("CARTRIDGE_WEBHOOK_MAX_BODY_BYTES")
    get_settings.cache_clear()


@pytest.fixture
def auto_register_octo(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[None]:
    monkeypatch.setenv("CARTRIDGE_AUTO_REGISTER_OWNERS", '["Octo"]')
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("CARTRIDGE_AUTO_REGISTER_OWNERS")
    get_settings.cache_clear()


@pytest.fixture
def server(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


def test_ping_is_answered_and_recorded(deliver: Deliver, session: Session) -> None:
    response = deliver("ping", load_payload("ping", "octokit-payload.json"))
    assert response.status_code == 200
    assert response.json()["outcome"] == "ping"
    delivery = session.scalars(select(WebhookDelivery)).one()
    assert (delivery.event, delivery.outcome) == ("ping", "ping")


@pytest.mark.parametrize("event", ["create", "delete", "issues", "pull_request"])
def test_other_events_are_acknowledged_and_recorded_as_ignored(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]], event: str
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    response = deliver(event, {"action": "opened", "repository": {"full_name": "octo/app"}})
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert counts() == {**NOTHING, "webhook_deliveries": 1}


@pytest.mark.parametrize(
    ("header", "code"),
    [("X-GitHub-Event", "missing_event_header"), ("X-GitHub-Delivery", "missing_delivery_header")],
)
def test_a_delivery_without_github_headers_is_400_and_not_recorded(
    client: TestClient,
    make_repository,
    counts: Callable[[], dict[str, int]],
    header: str,
    code: str,
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    body = encode(push_payload("octo/app"))
    headers = webhook_headers("push", body, WEBHOOK_SECRET)
    del headers[header]
    response = client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert counts() == NOTHING


def test_header_names_are_case_insensitive(client: TestClient, make_repository) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    body = encode(push_payload("octo/app"))
    headers = {
        key.lower(): value for key, value in webhook_headers("push", body, WEBHOOK_SECRET).items()
    }
    headers["x-github-event"] = headers.pop("x-github-event")
    response = client.post("/webhooks/github", content=body, headers=headers)
    assert response.json()["outcome"] == "accepted"


def test_a_redelivery_is_acknowledged_and_does_nothing_twice(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    body = encode(push_payload("octo/app", after=SHA_A))
    first = deliver("push", body, guid="delivery-1")
    assert first.json()["outcome"] == "accepted"
    after_first = counts()

    again = deliver("push", body, guid="delivery-1")

    assert again.status_code == 200
    assert again.json()["outcome"] == "duplicate"
    assert "accepted" in again.json()["detail"]
    assert (
        counts()
        == after_first
        == {
            "webhook_deliveries": 1,
            "pushes": 1,
            "builds": 1,
            "outbox": 1,
        }
    )


def test_a_refused_delivery_does_not_use_up_its_delivery_id(
    deliver: Deliver, make_repository
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    refused = deliver("push", {"ref": "refs/heads/main"}, guid="delivery-1")
    assert refused.status_code == 400
    fixed = deliver("push", push_payload("octo/app"), guid="delivery-1")
    assert fixed.json()["outcome"] == "accepted"


def test_a_push_for_an_unknown_repository_is_acknowledged_as_such(
    deliver: Deliver, session: Session, counts: Callable[[], dict[str, int]]
) -> None:
    response = deliver("push", push_payload("stranger/app"))
    assert response.status_code == 200
    assert response.json()["outcome"] == "unknown_repository"
    delivery = session.scalars(select(WebhookDelivery)).one()
    assert (delivery.repository_full_name, delivery.outcome) == (
        "stranger/app",
        "unknown_repository",
    )
    assert counts() == {**NOTHING, "webhook_deliveries": 1}


@pytest.mark.usefixtures("auto_register_octo")
def test_an_unknown_repository_of_an_auto_registered_owner_is_registered_and_built(
    deliver: Deliver, session: Session
) -> None:
    clone_url = "https://git.example.test/octo/New.App.git"
    payload = push_payload("octo/New.App", after=SHA_A, clone_url=clone_url)
    payload["repository"]["default_branch"] = "trunk"

    refused = deliver("push", payload, secret="wrong-secret")
    assert refused.status_code == 401
    assert session.scalars(select(Repository)).all() == []

    answer = deliver("push", payload).json()

    assert answer["outcome"] == "accepted"
    repository = session.scalars(select(Repository)).one()
    assert (repository.full_name, repository.image_name, repository.clone_url) == (
        "octo/New.App",
        "octo-new.app",
        clone_url,
    )
    assert (repository.default_branch, repository.webhook_secret) == ("trunk", None)
    assert session.get(Build, answer["build_id"]) is not None
    assert deliver("push", push_payload("octo/new.app")).json()["outcome"] == "accepted"
    assert deliver("push", push_payload("other/app")).json()["outcome"] == "unknown_repository"
    assert len(session.scalars(select(Repository)).all()) == 1


def test_an_oversized_body_is_413_and_not_recorded(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]], small_body_limit: int
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    payload = push_payload("octo/app")
    payload["padding"] = "x" * small_body_limit
    response = deliver("push", payload)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert counts() == NOTHING


def _exchange(url: str, head: str, chunks: list[bytes]) -> str:
    """Sends a hand-written request and returns the status code of the answer."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(head.encode())
        for chunk in chunks:
            connection.sendall(chunk)
        answer = b""
        while b"\r\n" not in answer:
            data = connection.recv(4096)
            if not data:
                break
            answer += data
    return answer.split(b"\r\n", 1)[0].decode().split(" ")[1]


def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    server: str, counts: Callable[[], dict[str, int]]
) -> None:
    limit = get_settings().webhook_max_body_bytes
    head = (
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
        f"Content-Length: {limit + 1}\r\n\r\n"
    )
    # Not a byte of the body is sent: the answer comes from the declared length alone.
    assert _exchange(server, head, []) == "413"
    assert counts() == NOTHING


def test_a_chunked_body_is_cut_off_at_the_limit(
    server: str, counts: Callable[[], dict[str, int]], small_body_limit: int
) -> None:
    head = (
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (600, b"x" * 600)
    # Two chunks pass the limit; the body never ends, yet the answer comes.
    assert _exchange(server, head, [chunk, chunk]) == "413"
    assert counts() == NOTHING


def test_a_chunked_body_within_the_limit_is_accepted(server: str, make_repository) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    body = encode(push_payload("octo/app"))
    headers = webhook_headers("push", body, WEBHOOK_SECRET)

    def pieces() -> Iterator[bytes]:
        yield body[:100]
        yield body[100:]

    response = httpx.post(f"{server}/webhooks/github", content=pieces(), headers=headers)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.json()["outcome"] == "accepted"


def _concurrently(count: int, send: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(count)
    responses: list[httpx.Response | None] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        responses[index] = send(index)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(response is not None for response in responses)
    return [response for response in responses if response is not None]


def test_concurrent_copies_of_a_delivery_are_recorded_once(
    server: str, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    body = encode(push_payload("octo/app", after=SHA_A))
    headers = webhook_headers("push", body, WEBHOOK_SECRET, guid="same-delivery")

    responses = _concurrently(
        8, lambda _: httpx.post(f"{server}/webhooks/github", content=body, headers=headers)
    )

    assert [response.status_code for response in responses] == [200] * 8
    outcomes = sorted(response.json()["outcome"] for response in responses)
    assert outcomes == ["accepted"] + ["duplicate"] * 7
    assert counts() == {"webhook_deliveries": 1, "pushes": 1, "builds": 1, "outbox": 1}


def test_concurrent_pushes_of_one_sha_share_one_build(
    server: str, make_repository, session: Session, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")

    def send(index: int) -> httpx.Response:
        payload = push_payload("octo/app", ref=f"refs/heads/branch-{index}", after=SHA_A)
        body = encode(payload)
        headers = webhook_headers("push", body, WEBHOOK_SECRET)
        return httpx.post(f"{server}/webhooks/github", content=body, headers=headers)

    responses = _concurrently(8, send)

    assert [response.status_code for response in responses] == [200] * 8
    assert len({response.json()["build_id"] for response in responses}) == 1
    assert counts() == {"webhook_deliveries": 8, "pushes": 8, "builds": 1, "outbox": 1}
    build = session.scalars(select(Build)).one()
    assert {push.build_id for push in session.scalars(select(Push))} == {build.id}
