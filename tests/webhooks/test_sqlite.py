"""The receiver on the single-node default, SQLite: the same ON CONFLICT paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app import migrate
from app.db import get_session_factory, reset_caches
from app.main import create_app
from app.models import Build, OutboxMessage, Push, Repository, WebhookDelivery
from app.outbox.relay import reset_relay
from tests.conftest import WEBHOOK_SECRET
from tests.support.github import encode, push_payload, webhook_headers

SHA_A, SHA_B = "a1" * 20, "b2" * 20


@pytest.fixture
def sqlite_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'cartridge.db'}"
    monkeypatch.setenv("CARTRIDGE_DATABASE_URL", url)
    reset_relay()
    reset_caches()
    try:
        migrate.upgrade(url)
        with get_session_factory()() as session:
            session.add(Repository(full_name="octo/app", clone_url="x", image_name="octo-app"))
            session.commit()
        with TestClient(create_app()) as client:
            yield client
    finally:
        reset_relay()
        monkeypatch.setenv("CARTRIDGE_DATABASE_URL", database_url)
        reset_caches()


def _send(client: TestClient, branch: str, sha: str, guid: str | None = None) -> dict:  # type: ignore[type-arg]
    body = encode(push_payload("octo/app", ref=f"refs/heads/{branch}", after=sha))
    headers = webhook_headers("push", body, WEBHOOK_SECRET, guid=guid)
    response = client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_receiver_works_on_sqlite(sqlite_client: TestClient) -> None:
    first = _send(sqlite_client, "feature/x", SHA_A, guid="one")
    assert _send(sqlite_client, "feature/x", SHA_A, guid="one")["outcome"] == "duplicate"
    shared = _send(sqlite_client, "feature/y", SHA_A)
    assert shared["build_id"] == first["build_id"]
    newer = _send(sqlite_client, "feature/y", SHA_B)
    assert newer["superseded_build_ids"] == []  # still the head of feature/x
    assert _send(sqlite_client, "feature/x", SHA_B)["superseded_build_ids"] == [first["build_id"]]

    with get_session_factory()() as session:
        counted = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (WebhookDelivery, Push, Build, OutboxMessage)
        }
        cancelled = session.get(Build, first["build_id"])
        assert cancelled is not None
        assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "Superseded by b2b2b2b")
    assert counted == {"webhook_deliveries": 4, "pushes": 4, "builds": 2, "outbox": 2}


def test_latest_green_answers_on_sqlite(sqlite_client: TestClient) -> None:
    url = "/api/v1/repos/octo/app/branches/main/latest-green"
    first = _send(sqlite_client, "main", SHA_A)
    missing = sqlite_client.get(url)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "no_green_build")

    with get_session_factory()() as session:
        build = session.get(Build, first["build_id"])
        assert build is not None
        build.status = "succeeded"
        session.commit()
    _send(sqlite_client, "main", SHA_B)  # newer, still queued: not green

    response = sqlite_client.get(url)
    assert response.status_code == 200, response.text
    assert (response.json()["sha"], response.json()["build_id"]) == (SHA_A, first["build_id"])
    other_case = sqlite_client.get("/api/v1/repos/Octo/App/branches/main/latest-green")
    assert other_case.status_code == 200
    assert other_case.json()["repository"] == "octo/app"
