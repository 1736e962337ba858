"""As a GitHub App, the reconciler asks GitHub to redeliver failed hook deliveries it never
recorded; the redelivery carries the same GUID, so a second copy changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import get_session_factory
from app.github.client import get_github_client
from app.models import HookRedelivery, PushSource, WebhookDelivery
from app.reconcile.runs import PassResult, run_pass
from tests.conftest import WEBHOOK_SECRET
from tests.github.conftest import forget_settings, github_env
from tests.reconcile.conftest import ENV, builds, pushes, sha
from tests.support.fake_github import FakeGitHub


@pytest.fixture(scope="module")
def app_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
def github(database_url: str, app_keys: tuple[str, str]) -> Iterator[FakeGitHub]:
    private, public = app_keys
    fake = FakeGitHub(token=None, app_id="4242", installation_id="77", app_public_key=public)
    app_env = {
        **ENV,
        "CARTRIDGE_GITHUB_APP_ID": "4242",
        "CARTRIDGE_GITHUB_APP_INSTALLATION_ID": "77",
        "CARTRIDGE_GITHUB_APP_PRIVATE_KEY": private,
    }
    with fake, github_env(fake, **app_env), pytest.MonkeyPatch.context() as patch:
        patch.delenv("CARTRIDGE_GITHUB_TOKEN")  # the App's credentials alone
        forget_settings()
        fake.webhook_secret = WEBHOOK_SECRET
        yield fake
        assert fake.contract_violations == []
        assert fake.rejections == []


@pytest.fixture
def up(github: FakeGitHub, client: TestClient) -> Callable[[], None]:
    """Cartridge starts answering GitHub's deliveries."""

    def send(body: bytes, headers: dict[str, str]) -> int:
        return client.post("/webhooks/github", content=body, headers=headers).status_code

    def start() -> None:
        github.webhook_url = "http://testserver/webhooks/github"
        github.webhook_sender = send

    return start


def _pass() -> PassResult:
    return run_pass(get_session_factory(), get_github_client(), get_settings())


def test_a_failed_delivery_is_redelivered_once_and_recorded_once(
    github: FakeGitHub, up, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    github.set_branches("octo/app", {"main": sha(0)})
    _pass()
    guid = github.push("octo/app", "topic", sha(1))  # Cartridge is down: delivery fails
    up()

    first = _pass()

    assert first.recovered_pushes == 1  # from the branch heads
    assert first.redeliveries == 1  # and the delivery itself, asked again
    assert len(github.redelivery_requests) == 1
    attempts = [a for a in github.hook_deliveries if a.guid == guid]
    assert [(a.status, a.redelivery) for a in attempts] == [
        ("failed to connect", False),
        ("OK", True),
    ]
    session.expire_all()
    [delivery] = session.scalars(select(WebhookDelivery).where(WebhookDelivery.guid == guid))
    assert delivery.outcome == "accepted"
    # The recovered push and the redelivered one share one build.
    topic = pushes(session, branch="topic")
    assert {p.source for p in topic} == {PushSource.RECONCILER, PushSource.WEBHOOK}
    assert [b.sha for b in builds(session) if b.sha == sha(1)] == [sha(1)]

    # The event is done now: the next pass asks for nothing.
    assert _pass().redeliveries == 0
    assert len(github.redelivery_requests) == 1
    # Someone redelivers it again by hand: the same GUID is answered "duplicate".
    github.redeliver(attempts[0].id)
    assert github.hook_deliveries[-1].status == "OK"
    assert len(pushes(session, branch="topic")) == 2
    assert len([b for b in builds(session) if b.sha == sha(1)]) == 1


def test_recorded_or_successful_events_are_not_redelivered(
    github: FakeGitHub, up, make_repository, client: TestClient, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    github.set_branches("octo/app", {"main": sha(0)})
    up()
    recorded = github.push("octo/app", "main", sha(1))
    # GitHub timed out on an answer Cartridge had committed: failed on GitHub's side only.
    github.add_hook_delivery(recorded, "push", status="timed out", status_code=0)
    # An event one attempt of which succeeded.
    github.add_hook_delivery("ok-later", "push", status="failed to connect", status_code=0)
    github.add_hook_delivery("ok-later", "push", status="OK", status_code=200)
    # Older than GitHub keeps deliveries: out of reach.
    github.add_hook_delivery(
        "too-old", "push", status="failed", status_code=0, age_seconds=4 * 86400
    )

    result = _pass()

    assert result.redeliveries == 0
    assert github.redelivery_requests == []


def test_a_delivery_that_keeps_failing_is_asked_for_a_bounded_number_of_times(
    github: FakeGitHub, make_repository, session: Session, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CARTRIDGE_RECONCILE_INTERVAL_SECONDS", "0.001")
    forget_settings()
    github.add_hook_delivery("lost", "issues", status="failed to connect", status_code=0)
    for _ in range(5):
        _pass()
    assert len(github.redelivery_requests) == get_settings().reconcile_max_redelivery_requests
    session.expire_all()
    row = session.get(HookRedelivery, "lost")
    assert row is not None
    assert row.requests == 3


def test_hook_deliveries_are_paged_by_cursor(github: FakeGitHub, session: Session) -> None:
    for n in range(250):
        github.add_hook_delivery(f"guid-{n}", "push", status="OK", status_code=200)
    github.add_hook_delivery("the-failed-one", "push", status="failed to connect", status_code=0)
    for n in range(250, 300):
        github.add_hook_delivery(f"guid-{n}", "push", status="OK", status_code=200)

    client = get_github_client()
    listed = client.list_app_hook_deliveries(datetime.now(UTC) - timedelta(days=1))

    assert len(listed) == 301
    assert len({d.guid for d in listed}) == 301
    paths = [r.path for r in github.requests if r.path.startswith("/app/hook/deliveries")]
    assert len(paths) == 4
    assert all("per_page=100" in p for p in paths)
    assert "cursor=" in paths[1]
