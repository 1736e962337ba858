"""Every recorded GitHub payload, re-signed, for registered and unknown repositories."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Build, Push, WebhookDelivery
from tests.support.github import form_body
from tests.support.paths import PAYLOADS_DIR
from tests.webhooks.conftest import Deliver

PAYLOAD_FILES = sorted(PAYLOADS_DIR.glob("*/*.json"))
REPOSITORIES = ("Codertocat/Hello-World", "binkkatal/sample_app", "Octocoders/Hello-World")
TAG_DELETIONS = {"octokit-payload.json", "octokit-1.json", "octokit-with-installation.json"}
TAG_DELETIONS |= {"octokit-with-organization.json"}
BRANCH_CREATIONS = {"octokit-with-new-branch.json", "octokit-with-no-username-committer.json"}
BRANCH_UPDATES = {"go-playground-push.json"}


def _expected_outcome(path: Path, registered: bool) -> str:
    event = path.parent.name
    if event == "ping":
        return "ping"
    if event != "push":
        return "ignored"
    if not registered:
        return "unknown_repository"
    if path.name in TAG_DELETIONS:
        return "recorded"
    assert path.name in BRANCH_CREATIONS | BRANCH_UPDATES, f"no expectation for {path}"
    return "accepted"


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_the_recorded_payloads_are_all_there() -> None:
    events = {path.parent.name for path in PAYLOAD_FILES}
    assert events == {"create", "delete", "ping", "push"}
    pushes = {path.name for path in PAYLOAD_FILES if path.parent.name == "push"}
    assert pushes == TAG_DELETIONS | BRANCH_CREATIONS | BRANCH_UPDATES


JSON, FORM = "application/json", "application/x-www-form-urlencoded"
# Every payload as JSON; the form encoding (same code path for every event) with pushes and pings.
REGISTERED_CASES = [(path, JSON) for path in PAYLOAD_FILES] + [
    (path, FORM) for path in PAYLOAD_FILES if path.parent.name in {"push", "ping"}
]


@pytest.mark.parametrize(
    ("path", "content_type"),
    REGISTERED_CASES,
    ids=[f"{_id(path)}-{'json' if kind == JSON else 'form'}" for path, kind in REGISTERED_CASES],
)
def test_a_recorded_payload_for_a_registered_repository(
    path: Path, content_type: str, deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    for full_name in REPOSITORIES:
        make_repository(full_name)
    raw = path.read_bytes()
    body = raw if content_type == JSON else form_body(raw)
    payload = json.loads(raw)

    response = deliver(path.parent.name, body, content_type=content_type)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["outcome"] == _expected_outcome(path, registered=True)
    delivery = session.scalars(select(WebhookDelivery)).one()
    assert delivery.guid == answer["delivery"]
    assert delivery.outcome == answer["outcome"]
    full_name = payload.get("repository", {}).get("full_name")
    assert delivery.repository_full_name == full_name
    pushes = list(session.scalars(select(Push)))
    builds = list(session.scalars(select(Build)))
    if path.parent.name != "push":
        assert (pushes, builds) == ([], [])
        return
    (push,) = pushes
    assert (push.ref, push.before_sha, push.after_sha) == (
        payload["ref"],
        payload["before"],
        payload["after"],
    )
    assert push.repository_id == delivery.repository_id
    if path.name in TAG_DELETIONS:
        assert (push.tag, push.deleted, push.decision, push.build_id) == (
            "simple-tag",
            True,
            "deleted",
            None,
        )
        assert builds == []
        return
    (build,) = builds
    assert (build.sha, build.status, build.attempt) == (payload["after"], "queued", 1)
    assert push.build_id == build.id == answer["build_id"]
    assert push.branch == "master"
    assert push.created == (path.name in BRANCH_CREATIONS)
    assert push.pusher == payload["pusher"]["name"]


@pytest.mark.parametrize("path", PAYLOAD_FILES, ids=_id)
def test_a_recorded_payload_for_an_unknown_repository(
    path: Path, deliver: Deliver, session: Session, counts: Callable[[], dict[str, int]]
) -> None:
    response = deliver(path.parent.name, path.read_bytes())

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == _expected_outcome(path, registered=False)
    delivery = session.scalars(select(WebhookDelivery)).one()
    assert delivery.repository_id is None
    assert counts() == {"webhook_deliveries": 1, "pushes": 0, "builds": 0, "outbox": 0}
