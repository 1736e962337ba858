"""Sending rules against the fake GitHub, one delivery at a time in this process."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import httpx
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.builds.transitions import transition
from app.cli.main import cli
from app.db import session_scope
from app.models import Build, BuildStatus, OutboxMessage, StatusPost
from app.models.base import utcnow
from app.statuses.sending import SendResult, backoff_seconds, redrive, send_newest
from app.statuses.service import SEND_TASK, record_status
from tests.github.conftest import github_env, retry
from tests.support.fake_github import FakeGitHub
from tests.support.server import serve


def _deliver(build_id: int) -> SendResult:
    with session_scope() as session:
        return send_newest(session, build_id)


def _posts(session: Session, build: Build) -> list[StatusPost]:
    session.expire_all()
    query = select(StatusPost).where(StatusPost.build_id == build.id).order_by(StatusPost.id)
    return list(session.scalars(query))


def _seen(fake: FakeGitHub) -> list[tuple[str, str | None]]:
    return [(s.state, s.description) for s in fake.statuses]


def _retries(session: Session, build: Build) -> list[int]:
    query = select(OutboxMessage).where(OutboxMessage.task_name == SEND_TASK)
    messages = session.scalars(query.order_by(OutboxMessage.id))
    return [m.countdown_seconds for m in messages if m.args == [build.id] and m.countdown_seconds]


def test_only_the_newest_unsent_status_is_sent(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    transition(session, build.id, BuildStatus.RUNNING, build_host="host-2")
    session.commit()
    transition(session, build.id, BuildStatus.FAILED, error="compile failed")
    session.commit()

    assert _deliver(build.id) is SendResult.SENT
    assert _deliver(build.id) is SendResult.NOTHING
    assert _seen(github) == [("failure", "compile failed")]
    queued, building, failed = _posts(session, build)
    assert (queued.send_state, building.send_state, failed.send_state) == (
        "skipped",
        "skipped",
        "sent",
    )
    assert queued.skip_reason == f"superseded by status post {failed.id}"
    assert (failed.tries, failed.response_code, failed.sent_at is not None) == (1, 201, True)
    assert (
        github.statuses[0].target_url == f"https://cartridge.example.com/api/v1/builds/{build.id}"
    )


def test_an_unchanged_status_is_not_posted_again(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    assert _deliver(build.id) is SendResult.SENT
    first = _posts(session, build)[0]
    record_status(session, build)
    session.commit()
    assert _deliver(build.id) is SendResult.SKIPPED
    assert _seen(github) == [("pending", "Queued")]
    assert _posts(session, build)[1].skip_reason == f"unchanged since status post {first.id}"


def test_a_late_pending_never_replaces_the_final_status_of_its_attempt(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    transition(session, build.id, BuildStatus.RUNNING, build_host="host-1")
    transition(session, build.id, BuildStatus.ERRORED, error="registry down")
    session.commit()
    assert _deliver(build.id) is SendResult.SENT
    late = StatusPost(
        build_id=build.id, attempt=1, state="pending", context="cartridge/build",
        description="Building on host-1", target_url=None,
    )  # fmt: skip
    session.add(late)
    session.commit()
    assert _deliver(build.id) is SendResult.SKIPPED
    assert _seen(github) == [("error", "registry down")]

    # A retry is a new attempt: its pending does replace the error.
    retry(session, build.id)
    session.commit()
    assert _deliver(build.id) is SendResult.SENT
    assert _seen(github) == [("error", "registry down"), ("pending", "Queued (attempt 2)")]


def test_a_server_error_is_retried_later_with_backoff(
    session: Session, fake_github: FakeGitHub, database_url: str, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    # A base long enough that "before the retry is due" holds on a loaded machine too.
    retry_env = {
        "CARTRIDGE_GITHUB_STATUS_RETRY_BASE_SECONDS": "30",
        "CARTRIDGE_GITHUB_STATUS_RETRY_MAX_SECONDS": "600",
    }
    with github_env(fake_github, **retry_env):
        build = make_build_with_status()
        fake_github.fail_next(500)
        before = utcnow()
        assert _deliver(build.id) is SendResult.RETRY
        [post] = _posts(session, build)
        assert (post.send_state, post.tries, post.response_code) == ("queued", 1, 500)
        assert post.last_error == "500 Server Error"
        assert post.next_try_at is not None
        # Base 30 s for the first retry, with jitter: between half and all of it.
        earliest, latest = before + timedelta(seconds=15), utcnow() + timedelta(seconds=30)
        assert earliest <= post.next_try_at <= latest
        [countdown] = _retries(session, build)
        assert 15 <= countdown <= 30

        # Before the retry is due, a new delivery (say, a duplicate message) waits too.
        assert _deliver(build.id) is SendResult.DEFERRED
        assert len(fake_github.requests) == 1

        session.execute(update(StatusPost).values(next_try_at=utcnow() - timedelta(seconds=1)))
        session.commit()
        assert _deliver(build.id) is SendResult.SENT
        assert _seen(fake_github) == [("pending", "Queued")]
        assert _posts(session, build)[0].tries == 2


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    for tries, ceiling in [(1, 5), (2, 10), (3, 20), (8, 600), (30, 600)]:
        delay = backoff_seconds(tries, base=5, cap=600)
        assert ceiling / 2 <= delay <= ceiling


def test_delivery_gives_up_after_the_configured_tries(
    session: Session, fake_github: FakeGitHub, database_url: str, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    with github_env(fake_github, CARTRIDGE_GITHUB_STATUS_MAX_TRIES="2"):
        build = make_build_with_status()
        fake_github.hang_next(3, times=2)
        assert _deliver(build.id) is SendResult.RETRY
        session.execute(update(StatusPost).values(next_try_at=utcnow()))
        session.commit()
        assert _deliver(build.id) is SendResult.FAILED
    [post] = _posts(session, build)
    assert (post.send_state, post.tries, post.next_try_at) == ("failed", 2, None)
    assert post.last_error is not None
    assert post.last_error.startswith("gave up after 2 tries: timed out")


def test_a_rate_limit_pauses_every_build_until_the_reset(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    limited, other = make_build_with_status(), make_build_with_status()
    reset = github.rate_limit_next(reset_in=60)
    assert _deliver(limited.id) is SendResult.RETRY
    [post] = _posts(session, limited)
    assert post.next_try_at is not None
    assert post.next_try_at.timestamp() == reset + 1
    assert post.response_code == 403
    [countdown] = _retries(session, limited)
    assert 55 <= countdown <= 62

    # The limit is GitHub's for our credentials: another build waits without asking.
    assert _deliver(other.id) is SendResult.DEFERRED
    assert len(github.requests) == 1
    [waiting] = _posts(session, other)
    assert waiting.next_try_at == post.next_try_at
    assert len(_retries(session, other)) == 1


def test_a_permanent_refusal_is_recorded_and_shown_by_the_api(
    session: Session, github: FakeGitHub, make_build_with_status, client: TestClient
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    github.fail_next(422, message="No commit found for SHA")
    assert _deliver(build.id) is SendResult.FAILED

    body = client.get(f"/api/v1/builds/{build.id}/statuses").json()
    [item] = body["items"]
    assert (item["state"], item["description"], item["send_state"]) == (
        "pending",
        "Queued",
        "failed",
    )
    assert (item["response_code"], item["last_error"]) == (422, "422 No commit found for SHA")
    assert (item["tries"], item["next_try_at"]) == (1, None)
    session.expire_all()
    assert session.get(Build, build.id).status == "queued"  # type: ignore[union-attr]

    # The next change of the build is delivered as usual.
    transition(session, build.id, BuildStatus.RUNNING, build_host="host-3")
    session.commit()
    assert _deliver(build.id) is SendResult.SENT
    assert _seen(github) == [("pending", "Building on host-3")]


def test_two_deliveries_of_one_build_never_overtake_each_other(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    github.delay_next(0.6)
    outcomes: list[SendResult] = []
    first = threading.Thread(target=lambda: outcomes.append(_deliver(build.id)))
    first.start()
    github.wait_for(lambda fake: fake.arrivals == 1)
    # While "Queued" is on its way, the build finishes and a second delivery starts.
    transition(session, build.id, BuildStatus.RUNNING, build_host="host-1")
    transition(session, build.id, BuildStatus.SUCCEEDED)
    session.commit()
    second = threading.Thread(target=lambda: outcomes.append(_deliver(build.id)))
    second.start()
    first.join(10)
    second.join(10)
    assert outcomes == [SendResult.SENT, SendResult.SENT]
    assert [state for state, _ in _seen(github)] == ["pending", "success"]


def test_redrive_requeues_only_deliveries_that_are_due(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    lost_retry, fresh, waiting, lost_first = (make_build_with_status() for _ in range(4))
    long_ago = utcnow() - timedelta(minutes=5)
    session.execute(
        update(StatusPost).where(StatusPost.build_id == lost_retry.id).values(next_try_at=long_ago)
    )
    session.execute(
        update(StatusPost)
        .where(StatusPost.build_id == waiting.id)
        .values(next_try_at=utcnow() + timedelta(minutes=5))
    )
    session.execute(
        update(StatusPost).where(StatusPost.build_id == lost_first.id).values(created_at=long_ago)
    )
    session.execute(update(OutboxMessage).values(dispatched_at=utcnow()))
    session.commit()

    with session_scope() as worker_session:
        assert redrive(worker_session) == 2
    pending = session.scalars(
        select(OutboxMessage.args).where(OutboxMessage.dispatched_at.is_(None))
    ).all()
    assert sorted(pending) == sorted([[lost_retry.id], [lost_first.id]])
    assert fresh.id not in {args[0] for args in pending}


def test_the_api_and_cli_show_the_history(
    session: Session, github: FakeGitHub, make_build_with_status, app: FastAPI
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    transition(session, build.id, BuildStatus.RUNNING, build_host="host-7")
    session.commit()
    _deliver(build.id)
    transition(session, build.id, BuildStatus.SUCCEEDED)
    session.commit()
    github.fail_next(404)
    _deliver(build.id)

    with serve(app) as api_url:
        # Read endpoints need no token by default.
        response = httpx.get(f"{api_url}/api/v1/builds/{build.id}/statuses")
        items = response.json()["items"]
        assert [(i["description"], i["send_state"], i["response_code"]) for i in items] == [
            ("Queued", "skipped", None),
            ("Building on host-7", "sent", 201),
            ("Built", "failed", 404),
        ]
        missing = httpx.get(f"{api_url}/api/v1/builds/999999/statuses")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "build_not_found"

        env = {"CARTRIDGE_API_URL": api_url}
        result = CliRunner().invoke(cli, ["builds", "statuses", str(build.id)], env=env)
        assert result.exit_code == 0, result.output
        header, queued, building, built = result.stdout.splitlines()
        assert header.split() == ["ID", "RECORDED", "TRY", "STATE", "DESCRIPTION", "SENT"]
        assert queued.endswith("pending  Queued              skipped: superseded by status post 2")
        assert building.endswith("sent")
        assert built.endswith("failed after 1 tries: 404 Server Error")
        as_json = CliRunner().invoke(cli, ["builds", "statuses", str(build.id), "--json"], env=env)
        assert json.loads(as_json.stdout)["items"] == items
        unknown = CliRunner().invoke(cli, ["builds", "statuses", "999999"], env=env)
        assert unknown.exit_code == 1
        assert "build_not_found" in unknown.output
