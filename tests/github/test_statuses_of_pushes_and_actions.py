"""The statuses recorded by the webhook receiver and the API's retry and cancel, through HTTP."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.builds.lifecycle import transition
from app.models import BuildStatus
from tests.conftest import WEBHOOK_SECRET
from tests.support.fake_github import FakeGitHub
from tests.support.github import push_payload, webhook_headers

SHA_OLD, SHA_NEW = "a1" * 20, "b2" * 20


def _push(client: TestClient, branch: str, sha: str) -> int:
    body = json.dumps(push_payload("octo/app", ref=f"refs/heads/{branch}", after=sha)).encode()
    headers = webhook_headers("push", body, WEBHOOK_SECRET)
    response = client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 200, response.text
    build_id: int = response.json()["build_id"]
    return build_id


def _history(client: TestClient, build_id: int) -> list[tuple[Any, ...]]:
    items = client.get(f"/api/v1/builds/{build_id}/statuses").json()["items"]
    return [(i["attempt"], i["state"], i["description"]) for i in items]


def test_a_push_records_queued_and_a_newer_push_records_superseded(
    github: FakeGitHub, client: TestClient, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    old = _push(client, "topic", SHA_OLD)
    assert _history(client, old) == [(1, "pending", "Queued")]
    assert transition(session, old, BuildStatus.RUNNING, build_host="host-1")
    session.commit()

    new = _push(client, "topic", SHA_NEW)
    assert _history(client, new) == [(1, "pending", "Queued")]
    assert _history(client, old) == [
        (1, "pending", "Queued"),
        (1, "pending", "Building on host-1"),
        (1, "error", f"Superseded by {SHA_NEW[:7]}"),
    ]

    # The same SHA pushed to another branch shares the build: nothing new to tell GitHub.
    assert _push(client, "other", SHA_NEW) == new
    assert _history(client, new) == [(1, "pending", "Queued")]


def test_cancel_and_retry_through_the_api(
    github: FakeGitHub, client: TestClient, auth: dict[str, str], make_repository
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    build = _push(client, "main", SHA_OLD)
    cancelled = client.post(f"/api/v1/builds/{build}/cancel", headers=auth)
    assert cancelled.status_code == 200, cancelled.text
    retried = client.post(f"/api/v1/builds/{build}/retry", headers=auth)
    assert retried.status_code == 200, retried.text

    assert _history(client, build) == [
        (1, "pending", "Queued"),
        (1, "error", "Cancelled by tests"),
        (2, "pending", "Queued (attempt 2)"),
    ]
