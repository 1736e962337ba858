"""What the retention policy deletes and what it keeps, and `cartridge db prune --dry-run`."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.builds import logs
from app.cli.main import cli
from app.db import get_session_factory
from app.models import (
    Build,
    BuildLogChunk,
    OutboxMessage,
    Push,
    Repository,
    StatusPost,
    WebhookDelivery,
)
from app.models.base import utcnow
from app.models.status_post import CommitState, SendState
from app.row_retention.service import RetentionPolicy, prune
from tests.support.factories import MakeBuild, MakePush, MakeRepository

NOW = utcnow()
OLD = NOW - timedelta(days=400)

POLICY = RetentionPolicy(
    deliveries=timedelta(days=30),
    outbox=timedelta(hours=24),
    status_posts=timedelta(days=30),
    log_age=timedelta(days=90),
    logs_per_branch=3,
    batch_size=7,  # several batches of each kind
)


def _count(session: Session, model: type, *where: object) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


def _deliveries(session: Session) -> tuple[list[str], list[str]]:
    old = [f"old-{n}" for n in range(20)]
    new = [f"new-{n}" for n in range(5)]
    for guid in old + new:
        received = NOW - timedelta(days=31 if guid.startswith("old") else 29)
        session.add(
            WebhookDelivery(guid=guid, event="push", outcome="accepted", received_at=received)
        )
    session.commit()
    return old, new


def _outbox(session: Session) -> set[int]:
    """Returns the ids of the rows that must stay."""
    stay = []
    for _n in range(15):  # dispatched two days ago: go
        session.add(OutboxMessage(task_name="t", queue="q", dispatched_at=NOW - timedelta(days=2)))
    for _ in range(4):  # dispatched an hour ago: stay
        stay.append(OutboxMessage(task_name="t", queue="q", dispatched_at=NOW - timedelta(hours=1)))
    # Old but never dispatched (the broker was down): stay. (An outbox relay left running by
    # another test may dispatch them meanwhile: then they are fresh, and stay all the more.)
    for _ in range(3):
        stay.append(OutboxMessage(task_name="t", queue="q", created_at=OLD, dispatched_at=None))
    session.add_all(stay)
    session.commit()
    return {row.id for row in stay}


def _posts(session: Session, build: Build) -> dict[str, int]:
    def post(state: SendState, created_days_ago: float) -> int:
        row = StatusPost(
            build_id=build.id,
            attempt=1,
            state=CommitState.PENDING,
            context="cartridge/build",
            description="x",
            send_state=state,
            created_at=NOW - timedelta(days=created_days_ago),
        )
        session.add(row)
        session.flush()
        return row.id

    ids = {
        "old sent": post(SendState.SENT, 60),
        "old skipped": post(SendState.SKIPPED, 59),
        "old failed": post(SendState.FAILED, 58),
        "last sent, old": post(SendState.SENT, 50),
        "old queued": post(SendState.QUEUED, 49),
    }
    session.commit()
    return ids


def _log(build: Build, attempt: int = 1, size: int = 50_000) -> None:
    with get_session_factory()() as session:
        logs.append(session, build.id, attempt, "x" * size)
        session.commit()


def _builds(repo: Repository, make_build: MakeBuild, make_push: MakePush) -> dict[str, Build]:
    """main: g1 (green, old) then eight failed builds; the last three of main are kept, and the
    latest green g1 although it is old and beyond them. feature: one old failed build (old, so
    it goes, although it is the last of its branch) and a running one."""
    builds: dict[str, Build] = {}

    def build(name: str, status: str, branch: str, finished: object) -> None:
        made = make_build(repo, status=status, finished_at=finished)
        make_push(repo, branch, made)
        builds[name] = made
        _log(made)

    build("g1", "succeeded", "main", OLD)
    for n in range(8):
        build(f"f{n}", "failed", "main", NOW - timedelta(days=1))
    build("feature-old", "failed", "feature", OLD)
    build("feature-running", "running", "feature", None)
    build("tagged", "succeeded", "unused", OLD)  # pushed as a tag below: its own latest green
    return builds


def test_prune_deletes_what_the_policy_lets_go_and_keeps_the_rest(
    session: Session, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    _old_guids, new_guids = _deliveries(session)
    staying_jobs = _outbox(session)
    repo = make_repository()
    builds = _builds(repo, make_build, make_push)
    posts = _posts(session, builds["g1"])
    make_push(repo, None, builds["tagged"], tag="v1")
    chunks_per_log = _count(session, BuildLogChunk, BuildLogChunk.build_id == builds["g1"].id)
    assert chunks_per_log > 0

    dry = prune(get_session_factory(), POLICY, dry_run=True)
    gone_logs = {"f0", "f1", "f2", "f3", "f4", "feature-old"}
    expected = {
        "webhook_deliveries": 20,
        "outbox": 15,
        "status_posts": 2,
        "build_logs": len(gone_logs),
        "build_log_chunks": len(gone_logs) * chunks_per_log,
    }
    assert dry.counts == expected
    assert _count(session, WebhookDelivery) == 25  # a dry run deletes nothing

    report = prune(get_session_factory(), POLICY)
    assert report.counts == expected
    assert report.skipped_batches == 0
    session.expire_all()

    guids = set(session.scalars(select(WebhookDelivery.guid)))
    assert guids == set(new_guids)
    assert set(session.scalars(select(OutboxMessage.id))) == staying_jobs
    remaining_posts = set(session.scalars(select(StatusPost.id)))
    assert remaining_posts == {posts["old failed"], posts["last sent, old"], posts["old queued"]}
    with_logs = {
        name
        for name, build in builds.items()
        if _count(session, BuildLogChunk, BuildLogChunk.build_id == build.id)
    }
    assert with_logs == set(builds) - gone_logs
    # Only logs go: builds and pushes are the history.
    assert _count(session, Build) == len(builds)
    assert _count(session, Push) == len(builds) + 1
    # Nothing is left to do.
    assert set(prune(get_session_factory(), POLICY).counts.values()) == {0}


def test_a_retry_started_since_keeps_the_new_attempts_log(
    session: Session, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    repo = make_repository()
    old = make_build(repo, status="failed", finished_at=OLD, attempt=2)
    make_push(repo, "main", old)
    newer = make_build(repo, status="succeeded", finished_at=NOW)
    make_push(repo, "main", newer)
    _log(old, attempt=1)
    _log(old, attempt=2)
    _log(old, attempt=3)  # what a retry that began meanwhile writes: attempt 3 is not in the row
    report = prune(get_session_factory(), POLICY)
    assert report.counts["build_logs"] == 1
    attempts = set(
        session.scalars(select(BuildLogChunk.attempt).where(BuildLogChunk.build_id == old.id))
    )
    assert attempts == {3}


def test_zero_keeps_a_kind_forever_and_the_cli_says_what_it_would_do(
    session: Session,
    database_url: str,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    from app.config import get_settings

    _deliveries(session)
    _outbox(session)
    monkeypatch.setenv("CARTRIDGE_ROW_RETENTION_DELIVERIES_DAYS", "0")
    get_settings.cache_clear()
    try:
        dry = CliRunner().invoke(cli, ["db", "prune", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "webhook_deliveries: would delete 0 (kept forever)" in dry.stdout
        assert "outbox: would delete 15 (dispatched more than 24 hours ago)" in dry.stdout
        assert _count(session, OutboxMessage) == 22
        done = CliRunner().invoke(cli, ["db", "prune"])
        assert "outbox: deleted 15" in done.stdout
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    session.expire_all()
    assert _count(session, WebhookDelivery) == 25
    assert _count(session, OutboxMessage) == 7
