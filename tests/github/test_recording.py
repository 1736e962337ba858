"""Statuses are recorded by the transition that causes them, in the same transaction."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from app.builds.transitions import transition
from app.config import get_settings
from app.models import Build, BuildStatus, OutboxMessage, StatusPost
from app.models.base import utcnow
from app.statuses.service import SEND_TASK, record_status
from tests.github.conftest import github_env, retry, supersede
from tests.support.fake_github import FakeGitHub


def _posts(session: Session, build: Build) -> list[tuple[int, str, str]]:
    query = select(StatusPost).where(StatusPost.build_id == build.id).order_by(StatusPost.id)
    return [(p.attempt, p.state, p.description) for p in session.scalars(query)]


def test_a_successful_build_records_queued_building_and_built(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    started = utcnow()
    assert transition(
        session, build.id, BuildStatus.RUNNING, build_host="host-2", started_at=started
    )
    session.commit()
    finished = started + timedelta(minutes=1, seconds=23)
    assert transition(session, build.id, BuildStatus.SUCCEEDED, finished_at=finished)
    session.commit()

    assert _posts(session, build) == [
        (1, "pending", "Queued"),
        (1, "pending", "Building on host-2"),
        (1, "success", "Built in 1m 23s"),
    ]
    post = session.scalars(select(StatusPost).where(StatusPost.build_id == build.id)).first()
    assert post is not None
    assert post.context == "cartridge/build"
    assert post.target_url == f"https://cartridge.example.com/api/v1/builds/{build.id}"
    assert post.send_state == "queued"
    messages = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    queue = get_settings().default_queue
    assert [(m.task_name, m.args, m.queue) for m in messages] == [
        (SEND_TASK, [build.id], queue)
    ] * 3


def test_failures_and_cancellations_carry_their_reason(
    session: Session, github: FakeGitHub, make_build_with_status, make_repository
) -> None:  # type: ignore[no-untyped-def]
    failed, errored, superseded, cancelled = (make_build_with_status() for _ in range(4))
    for build in (failed, errored, superseded, cancelled):
        transition(session, build.id, BuildStatus.RUNNING, build_host="host-1")
    transition(session, failed.id, BuildStatus.FAILED, error="container/compile exited with 2")
    transition(session, errored.id, BuildStatus.ERRORED, error="Docker engine unreachable")
    supersede(session, superseded)
    transition(session, cancelled.id, BuildStatus.CANCELLED, cancel_reason="Cancelled by alice")
    session.commit()

    assert _posts(session, failed)[-1] == (1, "failure", "container/compile exited with 2")
    assert _posts(session, errored)[-1] == (1, "error", "Docker engine unreachable")
    assert _posts(session, superseded)[-1] == (1, "error", "Superseded by 1a2b3c4")
    assert _posts(session, cancelled)[-1] == (1, "error", "Cancelled by alice")


def test_a_retry_is_a_new_attempt_that_is_pending_again(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    transition(session, build.id, BuildStatus.RUNNING, build_host="host-1")
    session.commit()
    transition(session, build.id, BuildStatus.ERRORED, error="lost the build host")
    session.commit()
    retry(session, build.id)
    session.commit()
    assert _posts(session, build)[-2:] == [
        (1, "error", "lost the build host"),
        (2, "pending", "Queued (attempt 2)"),
    ]


def test_several_moves_in_one_transaction_owe_only_the_last_status(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    transition(session, build.id, BuildStatus.RUNNING, build_host="host-1")
    transition(session, build.id, BuildStatus.FAILED)
    # Changed after the transition, in the same transaction: the status carries it.
    session.execute(update(Build).where(Build.id == build.id).values(error="roles.json is invalid"))
    session.commit()
    assert _posts(session, build) == [
        (1, "pending", "Queued"),
        (1, "failure", "roles.json is invalid"),
    ]


def test_a_long_reason_is_cut_to_githubs_limit(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    transition(session, build.id, BuildStatus.RUNNING)
    transition(session, build.id, BuildStatus.FAILED, error="npm ERR!\n" + "x" * 500)
    session.commit()
    description = _posts(session, build)[-1][2]
    assert len(description) == 140
    assert description.startswith("npm ERR! xxx")
    assert description.endswith("…")


def test_nothing_is_recorded_when_the_transition_rolls_back(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    transition(session, build.id, BuildStatus.RUNNING)
    session.rollback()
    assert _posts(session, build) == [(1, "pending", "Queued")]
    assert session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())) == 1


def test_a_transition_that_loses_the_race_records_nothing(
    session: Session, github: FakeGitHub, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    assert not transition(session, build.id, BuildStatus.SUCCEEDED)
    session.commit()
    assert _posts(session, build) == [(1, "pending", "Queued")]


def test_the_context_is_configurable(
    session: Session, fake_github: FakeGitHub, database_url: str, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    with github_env(fake_github, CARTRIDGE_GITHUB_STATUS_CONTEXT="ci/cartridge"):
        build = make_build_with_status()
    post = session.scalars(select(StatusPost).where(StatusPost.build_id == build.id)).one()
    assert post.context == "ci/cartridge"


def test_without_github_credentials_no_status_is_recorded(
    session: Session, database_url: str, make_build_with_status
) -> None:  # type: ignore[no-untyped-def]
    build = make_build_with_status()
    transition(session, build.id, BuildStatus.RUNNING)
    session.commit()
    assert _posts(session, build) == []
    assert session.scalar(select(OutboxMessage.id)) is None


def test_a_build_created_by_a_statement_is_recorded_by_its_id(
    session: Session, github: FakeGitHub, make_repository
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository()
    build_id = session.scalar(
        insert(Build).values(repository_id=repository.id, sha="e" * 40).returning(Build.id)
    )
    assert build_id is not None
    record_status(session, build_id)
    session.commit()
    build = session.get(Build, build_id)
    assert build is not None
    assert _posts(session, build) == [(1, "pending", "Queued")]
