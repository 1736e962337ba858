"""Reconciler passes against the fake GitHub: missed pushes are recovered and built, a listing
GitHub did not change costs nothing and writes nothing, a thousand repositories fit the budget."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.builds.lifecycle import transition
from app.models import (
    BuildStatus,
    KnownBranchHead,
    OutboxMessage,
    PushSource,
    ReconcileOutcome,
    ReconcilerRun,
    Repository,
    RepositoryReconciliation,
)
from app.reconcile.runs import PassResult
from tests.conftest import WEBHOOK_SECRET
from tests.reconcile.conftest import Counts, builds, pushes, sha
from tests.support.fake_github import FakeGitHub
from tests.support.github import push_payload, webhook_headers

Reconcile = Callable[[], PassResult]


def _register(make_repository, github: FakeGitHub, full_name: str = "octo/app", **fields: Any):  # type: ignore[no-untyped-def]
    repository = make_repository(full_name, **fields)
    github.set_branches(full_name, {"main": sha(0)})
    return repository


def test_a_push_made_while_cartridge_was_down_is_built_after_one_pass(
    github: FakeGitHub,
    reconcile: Reconcile,
    make_repository,
    session: Session,
    client: TestClient,
) -> None:  # type: ignore[no-untyped-def]
    repository = _register(make_repository, github)
    reconcile()  # the first pass, right after registration
    github.webhook_url = None  # Cartridge is down: GitHub's one delivery fails
    github.push("octo/app", "feature/x", sha(1))
    github.push("octo/app", "main", sha(2))
    assert [a.status for a in github.hook_deliveries] == ["failed to connect"] * 2

    result = reconcile()

    assert result.recovered_pushes == 2
    recovered = pushes(session, source=PushSource.RECONCILER)
    assert {(p.branch, p.before_sha, p.after_sha) for p in recovered} >= {
        ("feature/x", "0" * 40, sha(1)),
        ("main", sha(0), sha(2)),
    }
    built = {b.sha: b for b in builds(session)}
    assert built[sha(1)].status == BuildStatus.QUEUED
    assert built[sha(2)].status == BuildStatus.QUEUED
    # Queued the way a webhook queues: a build job in the outbox, committed with the push.
    jobs = session.scalars(
        select(OutboxMessage).where(OutboxMessage.task_name == "cartridge.builds.run")
    )
    assert {tuple(job.args) for job in jobs} >= {(built[sha(1)].id,), (built[sha(2)].id,)}
    # The API shows where the push came from, and the repository when it was reconciled.
    detail = client.get(f"/api/v1/builds/{built[sha(1)].id}").json()
    assert [p["source"] for p in detail["pushes"]] == ["reconciler"]
    shown = client.get("/api/v1/repos/octo/app").json()["last_reconciliation"]
    assert shown["outcome"] == "recovered"
    assert shown["recovered_pushes"] == 2
    heads = dict(
        session.execute(
            select(KnownBranchHead.branch, KnownBranchHead.sha).where(
                KnownBranchHead.repository_id == repository.id
            )
        ).all()
    )
    assert heads == {"main": sha(2), "feature/x": sha(1)}
    metrics = client.get("/metrics").text
    # The default branch's head, built on the first pass, and the two pushes above.
    assert "cartridge_recovered_pushes_total 3.0" in metrics


def test_the_first_pass_adopts_the_heads_and_builds_only_the_default_branch(
    github: FakeGitHub, reconcile: Reconcile, make_repository, session: Session, counts
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/big", default_branch="trunk")
    branches = {f"topic/{n:03d}": sha(n) for n in range(499)}
    github.set_branches("octo/big", {**branches, "trunk": sha(1000)})

    result = reconcile()

    assert result.requests == 5  # 500 branches, 100 a page
    assert [b.sha for b in builds(session)] == [sha(1000)]
    assert counts()["branch_heads"] == 500
    row = session.scalars(select(RepositoryReconciliation)).one()
    assert row.outcome == ReconcileOutcome.ADOPTED
    assert row.summary["adopted"] == 499

    # A second pass builds nothing more: every head is known now.
    github.push("octo/big", "topic/007", sha(7, "new"))
    assert reconcile().recovered_pushes == 1
    assert sorted(b.sha for b in builds(session)) == sorted([sha(1000), sha(7, "new")])


def test_the_default_branch_is_not_built_again_on_adoption(
    github: FakeGitHub, reconcile: Reconcile, make_repository, session: Session, client, deliver
) -> None:  # type: ignore[no-untyped-def]
    _register(make_repository, github)
    deliver("octo/app", "main", sha(0))
    assert reconcile().repositories == 1
    assert len(builds(session)) == 1
    assert pushes(session, source=PushSource.RECONCILER) == []


def test_a_pass_github_answers_with_304_makes_no_writes(
    github: FakeGitHub, reconcile: Reconcile, make_repository, snapshot, session: Session
) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        make_repository(f"octo/app-{n}")
        github.set_branches(f"octo/app-{n}", {f"b{i}": sha(i, str(n)) for i in range(150)})
    reconcile()
    github.push("octo/app-1", "b3", sha(3, "moved"))
    reconcile()
    before = snapshot()
    spent = github.rate_used

    result = reconcile()

    assert result.requests == 6
    assert result.not_modified == 6
    assert github.rate_used == spent  # 304s are free
    assert snapshot() == before
    session.expire_all()
    outcomes = {r.outcome for r in session.scalars(select(RepositoryReconciliation))}
    assert outcomes == {ReconcileOutcome.UNCHANGED}


def test_a_deleted_branch_is_recorded_as_deleted(
    github: FakeGitHub, reconcile: Reconcile, make_repository, session: Session, client
) -> None:  # type: ignore[no-untyped-def]
    _register(make_repository, github)
    github.push("octo/app", "gone", sha(5))
    reconcile()
    github.delete_branch("octo/app", "gone")

    result = reconcile()

    assert result.recovered_pushes == 1
    [deletion] = pushes(session, branch="gone", deleted=True)
    assert deletion.source == PushSource.RECONCILER
    assert deletion.before_sha == sha(5)
    assert deletion.decision == "deleted"
    session.expire_all()
    head = session.get(KnownBranchHead, (deletion.repository_id, "gone"))
    assert head is not None
    assert head.sha is None
    answer = client.get("/api/v1/repos/octo/app/branches/gone/latest-green")
    assert answer.status_code == 404


def test_branches_the_filters_exclude_are_not_recovered(
    github: FakeGitHub, reconcile: Reconcile, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    _register(make_repository, github, branch_filters=["main", "release/*"])
    reconcile()
    github.push("octo/app", "scratch", sha(1))
    github.push("octo/app", "release/2", sha(2))

    result = reconcile()

    assert result.recovered_pushes == 1
    assert [b.sha for b in builds(session)] == [sha(0), sha(2)]  # main's, from the first pass


def test_a_recovered_push_supersedes_the_branchs_older_build(
    github: FakeGitHub, reconcile: Reconcile, make_repository, session: Session, deliver
) -> None:  # type: ignore[no-untyped-def]
    _register(make_repository, github)
    reconcile()
    first = deliver("octo/app", "topic", sha(1))["build_id"]
    github.webhook_url = None
    github.push("octo/app", "topic", sha(2))

    reconcile()

    by_sha = {b.sha: b for b in builds(session)}
    assert by_sha[sha(1)].id == first
    assert by_sha[sha(1)].status == BuildStatus.CANCELLED
    assert by_sha[sha(1)].cancel_reason == f"Superseded by {sha(2)[:7]}"
    assert by_sha[sha(2)].status == BuildStatus.QUEUED


def test_a_known_sha_shares_its_build(
    github: FakeGitHub, reconcile: Reconcile, make_repository, session: Session, deliver
) -> None:  # type: ignore[no-untyped-def]
    _register(make_repository, github)
    reconcile()
    built = deliver("octo/app", "one", sha(1))["build_id"]
    assert transition(session, built, BuildStatus.RUNNING)
    assert transition(session, built, BuildStatus.SUCCEEDED)
    session.commit()
    github.webhook_url = None
    github.push("octo/app", "two", sha(1))  # another branch at the same commit

    assert reconcile().recovered_pushes == 1
    shared = [b for b in builds(session) if b.sha == sha(1)]
    assert [(b.id, b.status) for b in shared] == [(built, BuildStatus.SUCCEEDED)]
    assert len(pushes(session, after_sha=sha(1))) == 2


@pytest.mark.e2e
def test_a_thousand_repositories_in_one_pass_within_the_rate_budget(
    github: FakeGitHub, reconcile: Reconcile, session: Session, counts: Callable[[], Counts]
) -> None:
    rows = [
        {
            "full_name": f"org/repo-{n:04d}",
            "clone_url": f"https://github.com/org/repo-{n:04d}.git",
            "image_name": f"org-repo-{n:04d}",
            "default_branch": "main",
            "branch_filters": [],
            "build_tags": False,
            "cancel_superseded": True,
        }
        for n in range(1000)
    ]
    session.execute(insert(Repository), rows)
    session.commit()
    for n in range(1000):
        github.set_branches(f"org/repo-{n:04d}", {"main": sha(n), "dev": sha(n, "dev")})
    github.rate_limit = 5000

    first = reconcile()

    assert first.repositories == 1000
    assert first.requests == 1000  # one page per repository, nothing else
    assert len(github.counted_requests()) == 1000
    assert counts()["builds"] == 1000  # each default branch's head, built once
    for n in range(0, 1000, 100):
        github.push(f"org/repo-{n:04d}", "dev", sha(n, "moved"))
    spent = github.rate_used

    second = reconcile()

    assert second.repositories == 1000
    assert second.requests == 1000
    assert second.not_modified == 990
    assert github.rate_used - spent == 10  # only the changed listings cost anything
    assert second.recovered_pushes == 10
    assert github.rate_used <= github.rate_limit
    runs = session.scalars(select(ReconcilerRun).order_by(ReconcilerRun.id)).all()
    assert [(r.requests, r.running) for r in runs] == [(1000, None), (1000, None)]


def test_a_rate_limit_stops_the_pass_until_github_says(
    github: FakeGitHub, reconcile: Reconcile, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        _register(make_repository, github, f"octo/app-{n}")
    github.secondary_rate_limit_next(retry_after=120)

    stopped = reconcile()

    assert stopped.repositories == 1
    assert stopped.requests == 1
    assert stopped.rate_limited_until is not None
    waiting = reconcile()
    assert waiting.skipped is not None
    assert "wait until" in waiting.skipped
    assert len(github.requests) == 1  # nothing was asked while GitHub said to wait
    session.expire_all()
    limited = session.scalars(select(RepositoryReconciliation)).one()
    assert limited.outcome == ReconcileOutcome.RATE_LIMITED


def test_the_pass_keeps_a_reserve_of_the_budget(
    github: FakeGitHub, reconcile: Reconcile, make_repository, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from tests.github.conftest import forget_settings

    monkeypatch.setenv("CARTRIDGE_RECONCILE_RATE_LIMIT_RESERVE", "100")
    forget_settings()
    for n in range(5):
        _register(make_repository, github, f"octo/app-{n}")
    github.rate_limit = 102  # the first two answers leave 100, then 99... the reserve

    result = reconcile()

    assert result.requests == 3
    assert result.rate_limited_until is not None


def test_a_repository_github_does_not_know_fails_alone(
    github: FakeGitHub, reconcile: Reconcile, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/vanished")
    _register(make_repository, github, "octo/app")

    result = reconcile()

    assert result.outcomes == {"failed": 1, "adopted": 1}
    session.expire_all()
    rows = {r.repository_id: r for r in session.scalars(select(RepositoryReconciliation))}
    failed = [r for r in rows.values() if r.outcome == ReconcileOutcome.FAILED]
    assert failed[0].summary["error"].startswith("404")


def test_only_one_pass_runs_at_a_time(
    github: FakeGitHub, reconcile: Reconcile, session: Session
) -> None:
    session.add(ReconcilerRun(running=True))
    session.commit()
    assert reconcile().skipped == "another pass is running"


def test_a_broken_chain_is_settled_against_github(
    github: FakeGitHub, reconcile: Reconcile, make_repository, session: Session, client
) -> None:  # type: ignore[no-untyped-def]
    repository = _register(make_repository, github)
    reconcile()
    commits = [sha(n, "chain") for n in range(1, 4)]
    github.set_branches("octo/app", {"main": sha(0), "topic": commits[2]})
    payloads = [
        push_payload("octo/app", ref="refs/heads/topic", before=before, after=after)
        for before, after in zip(["0" * 40, *commits[:2]], commits, strict=True)
    ]
    for payload in (payloads[2], payloads[0]):  # the middle push never arrives
        body = json.dumps(payload).encode()
        headers = webhook_headers("push", body, WEBHOOK_SECRET)
        assert client.post("/webhooks/github", content=body, headers=headers).status_code == 200
    session.expire_all()
    head = session.get(KnownBranchHead, (repository.id, "topic"))
    assert head is not None
    assert head.sha == commits[0]  # the newest known head: the last one received

    result = reconcile()

    assert result.recovered_pushes == 1
    session.expire_all()
    head = session.get(KnownBranchHead, (repository.id, "topic"))
    assert head is not None
    assert head.sha == commits[2]
    by_sha = {b.sha: b for b in builds(session)}
    assert by_sha[commits[2]].status == BuildStatus.QUEUED  # queued again: it is the head
    assert by_sha[commits[0]].status == BuildStatus.CANCELLED
