"""The periodic task: beat's schedule task queues a pass through the outbox, within the jitter;
the pass task reconciles every repository, and idles without GitHub credentials."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import OutboxMessage, ReconcilerRun
from tests.reconcile.conftest import sha
from tests.support.fake_github import FakeGitHub
from workers.celery_app import celery_app
from workers.reconcile import RECONCILE_TASK, SCHEDULE_TASK, reconcile, schedule_pass


def test_beat_runs_the_schedule_task_every_interval() -> None:
    [entry] = [e for e in celery_app.conf.beat_schedule.values() if e["task"] == SCHEDULE_TASK]
    assert entry["schedule"] == 300.0


def test_the_schedule_task_queues_a_pass_within_the_jitter(
    github: FakeGitHub, session: Session
) -> None:
    countdown = schedule_pass()
    assert 0 <= countdown <= 30
    session.expire_all()
    [message] = session.scalars(
        select(OutboxMessage).where(OutboxMessage.task_name == RECONCILE_TASK)
    )
    assert message.countdown_seconds == round(countdown)


def test_the_pass_task_reconciles_every_repository(
    github: FakeGitHub, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        make_repository(f"octo/app-{n}")
        github.set_branches(f"octo/app-{n}", {"main": sha(n)})
    result = reconcile()
    assert result["repositories"] == 3
    assert result["requests"] == 3
    session.expire_all()
    [run] = session.scalars(select(ReconcilerRun))
    assert run.finished_at is not None
    assert run.running is None


def test_the_pass_task_idles_without_credentials(database_url: str, session: Session) -> None:
    assert "no GitHub credentials" in reconcile()["skipped"]
    assert session.scalars(select(ReconcilerRun)).all() == []
