"""Leases: the heartbeat renews them and notices cancellation; the reaper recovers lost builds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK
from app.builds import logs
from app.builds.leases import hand_back, reap_expired_leases
from app.builds.lifecycle import transition
from app.config import get_settings
from app.models import Build, BuildStatus, OutboxMessage, Repository
from app.models.base import utcnow
from tests.builds.helpers import reload, wait_for
from workers.pipeline.control import BuildControl, Supervisor
from workers.pipeline.image_build import docker_api
from workers.pipeline.outcomes import BuildCancelled, BuildErrored, BuildHandedBack

MakeBuild = Callable[[Repository, str], Build]


def running(session: Session, build: Build, *, lease_left: float, host: str = "host-1") -> Build:
    now = utcnow()
    assert transition(
        session,
        build.id,
        BuildStatus.RUNNING,
        started_at=now,
        build_host=host,
        heartbeat_at=now,
        lease_expires_at=now + timedelta(seconds=lease_left),
    )
    session.commit()
    return reload(session, build)


@pytest.fixture
def build(session: Session, make_repository, make_build: MakeBuild) -> Build:  # type: ignore[no-untyped-def]
    return make_build(make_repository(), "c" * 40)


def outbox_args(session: Session) -> list[list[int]]:
    return [
        m.args
        for m in session.scalars(select(OutboxMessage).where(OutboxMessage.task_name == BUILD_TASK))
    ]


def test_an_expired_lease_is_retried_as_a_new_attempt(
    session: Session, build_env: dict[str, str], build: Build
) -> None:
    running(session, build, lease_left=-1)

    result = reap_expired_leases(session, get_settings())
    session.commit()

    assert result.requeued == [build.id]
    build = reload(session, build)
    assert (build.status, build.attempt, build.lease_retries) == ("queued", 2, 1)
    assert (build.build_host, build.lease_expires_at, build.started_at) == (None, None, None)
    assert outbox_args(session) == [[build.id]]
    note = logs.read(session, build.id, 1).content
    assert note.startswith("==> worker lost: no heartbeat from host-1 since ")
    assert note.endswith("queued again as attempt 2\n")


def test_past_the_retry_bound_a_lost_build_is_errored(
    session: Session, set_build_env: Callable[..., None], build: Build
) -> None:
    set_build_env(max_lease_retries="1")
    running(session, build, lease_left=-1)
    reap_expired_leases(session, get_settings())
    session.commit()
    running(session, build, lease_left=-1, host="host-2")

    result = reap_expired_leases(session, get_settings())
    session.commit()

    assert result.errored == [build.id]
    build = reload(session, build)
    assert (build.status, build.attempt) == ("errored", 2)
    assert build.error is not None
    assert build.error.startswith("worker lost: no heartbeat from host-2 since ")
    assert build.error.endswith("(retried 1 times)")
    assert build.finished_at is not None
    assert len(outbox_args(session)) == 1


def test_live_leases_and_other_statuses_are_left_alone(
    session: Session,
    build_env: dict[str, str],
    make_repository,
    make_build: MakeBuild,  # type: ignore[no-untyped-def]
) -> None:
    repository = make_repository()
    live = running(session, make_build(repository, "1" * 40), lease_left=30)
    queued = make_build(repository, "2" * 40)

    result = reap_expired_leases(session, get_settings())
    session.commit()

    assert (result.requeued, result.errored) == ([], [])
    assert reload(session, live).status == "running"
    assert reload(session, queued).status == "queued"


def test_a_shutting_down_worker_hands_back_only_its_own_running_build(
    session: Session,
    build_env: dict[str, str],
    make_repository,
    make_build: MakeBuild,  # type: ignore[no-untyped-def]
) -> None:
    settings = get_settings()
    repository = make_repository()
    elsewhere = running(session, make_build(repository, "1" * 40), lease_left=30, host="host-9")
    here = running(
        session, make_build(repository, "2" * 40), lease_left=30, host=settings.host_name
    )

    assert not hand_back(session, elsewhere.id, settings, note="shutting down")
    assert hand_back(session, here.id, settings, note="shutting down")
    session.commit()

    assert reload(session, elsewhere).status == "running"
    here = reload(session, here)
    assert (here.status, here.attempt, here.lease_retries) == ("queued", 2, 0)
    assert outbox_args(session) == [[here.id]]


@pytest.fixture
def supervised(session: Session, build_env: dict[str, str], build: Build):  # type: ignore[no-untyped-def]
    running(session, build, lease_left=1)
    control = BuildControl(docker_api(None), deadline=float("inf"))
    with Supervisor(
        control, build.id, 1, heartbeat_seconds=0.1, lease_seconds=60, timeout_seconds=60
    ):
        yield control


def test_the_heartbeat_renews_the_lease(
    session: Session, build: Build, supervised: BuildControl
) -> None:
    first_expiry = reload(session, build).lease_expires_at
    assert first_expiry is not None
    wait_for(
        "a renewed lease",
        lambda: (
            (reload(session, build).lease_expires_at or first_expiry)
            > first_expiry + timedelta(seconds=30)
        ),
    )
    assert supervised.reason is None


def test_the_heartbeat_notices_a_cancel(
    session: Session, build: Build, supervised: BuildControl
) -> None:
    transition(session, build.id, BuildStatus.CANCELLED, cancel_reason="Superseded by 1a2b3c4")
    session.commit()
    wait_for("the abort", lambda: supervised.reason)
    assert isinstance(supervised.reason, BuildCancelled)
    assert supervised.reason.message == "cancelled: Superseded by 1a2b3c4"
    with pytest.raises(BuildCancelled):
        supervised.check()


def test_the_heartbeat_notices_that_another_attempt_took_over(
    session: Session, build: Build, supervised: BuildControl
) -> None:
    reap_expired_leases(session, get_settings(), now=utcnow() + timedelta(hours=1))
    session.commit()
    wait_for("the abort", lambda: supervised.reason)
    assert isinstance(supervised.reason, BuildHandedBack)


def test_the_heartbeat_enforces_the_time_limit(
    session: Session, build_env: dict[str, str], build: Build
) -> None:
    running(session, build, lease_left=60)
    control = BuildControl(docker_api(None), deadline=0)
    with Supervisor(
        control, build.id, 1, heartbeat_seconds=0.05, lease_seconds=60, timeout_seconds=7
    ):
        wait_for("the abort", lambda: control.reason)
    assert isinstance(control.reason, BuildErrored)
    assert control.reason.message == "build exceeded its time limit of 7s"
