"""A branch's order comes from its pushes' chain (each names the head it replaced), not from the
order GitHub delivers them in: every arrival order of a chain ends at its true head, with the
right builds cancelled and the right latest green."""

from __future__ import annotations

import hashlib
import itertools
import random
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.builds.lifecycle import transition
from app.models import Build, BuildStatus, KnownBranchHead, Push, Repository
from tests.support.github import ZERO_SHA, push_payload
from tests.webhooks.conftest import Deliver

CHAIN = 4


def sha(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:40]


def chain(name: str, branch: str, length: int = CHAIN) -> list[dict[str, Any]]:
    """The pushes of a branch created by the first and moved by each next one."""
    commits = [ZERO_SHA] + [sha(name, branch, n) for n in range(1, length + 1)]
    return [
        push_payload(name, ref=f"refs/heads/{branch}", before=commits[n], after=commits[n + 1])
        for n in range(length)
    ]


def _send(deliver: Deliver, payload: dict[str, Any], guid: str | None = None) -> dict[str, Any]:
    response = deliver("push", payload, guid=guid)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _head(session: Session, repository: Repository, branch: str) -> str | None:
    session.expire_all()
    head = session.get(KnownBranchHead, (repository.id, branch))
    assert head is not None
    return head.sha


def _builds(session: Session, repository: Repository) -> dict[str, Build]:
    session.expire_all()
    query = select(Build).where(Build.repository_id == repository.id)
    return {build.sha: build for build in session.scalars(query)}


def _succeed(session: Session, build: Build) -> None:
    assert transition(session, build.id, BuildStatus.RUNNING)
    assert transition(session, build.id, BuildStatus.SUCCEEDED)
    session.commit()


def _latest_green(client: TestClient, name: str, branch: str) -> str | None:
    answer = client.get(f"/api/v1/repos/{name}/branches/{branch}/latest-green")
    return answer.json()["sha"] if answer.status_code == 200 else None


@pytest.mark.parametrize("order", list(itertools.permutations(range(CHAIN))))
def test_every_arrival_order_ends_at_the_head_with_older_builds_cancelled(
    order: tuple[int, ...],
    deliver: Deliver,
    make_repository,
    session: Session,
    client: TestClient,
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository("octo/app")
    pushes = chain("octo/app", "topic")
    for index in order:
        _send(deliver, pushes[index])
    commits = [push["after"] for push in pushes]
    tip = commits[-1]

    assert _head(session, repository, "topic") == tip
    builds = _builds(session, repository)
    assert builds[tip].status == BuildStatus.QUEUED
    for commit, build in builds.items():
        if commit != tip:
            # Cancelled as superseded, whenever it arrived. (While the chain is broken, the
            # newest known head may be an older commit: the reason names the head of then.)
            assert build.status == BuildStatus.CANCELLED, (commit, order)
            assert build.cancel_reason is not None
            assert build.cancel_reason.removeprefix("Superseded by ") in {c[:7] for c in commits}
    _succeed(session, builds[tip])
    assert _latest_green(client, "octo/app", "topic") == tip


@pytest.mark.parametrize("order", list(itertools.permutations(range(CHAIN))))
def test_every_arrival_order_gives_the_newest_green_commit_of_a_protected_branch(
    order: tuple[int, ...],
    deliver: Deliver,
    make_repository,
    session: Session,
    client: TestClient,
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository("octo/app")  # main is protected: every commit is built
    pushes = chain("octo/app", "main")
    for index in order:
        _send(deliver, pushes[index])
    commits = [push["after"] for push in pushes]

    assert _head(session, repository, "main") == commits[-1]
    builds = _builds(session, repository)
    assert {b.status for b in builds.values()} == {BuildStatus.QUEUED}
    assert sorted(builds) == sorted(commits)
    # The two oldest commits are green, in the reverse order of their pushes' arrival.
    for commit in sorted(commits[:2], key=lambda c: -order.index(commits.index(c))):
        _succeed(session, builds[commit])
    assert _latest_green(client, "octo/app", "main") == commits[1]
    _succeed(session, builds[commits[3]])
    assert _latest_green(client, "octo/app", "main") == commits[3]
    _succeed(session, builds[commits[2]])  # finishing last does not make it "latest"
    assert _latest_green(client, "octo/app", "main") == commits[3]


def test_a_force_push_back_to_an_older_commit_is_honoured(
    deliver: Deliver, make_repository, session: Session, client: TestClient
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository("octo/app")
    pushes = chain("octo/app", "topic", 3)
    answers = [_send(deliver, push) for push in pushes]
    first, third = pushes[0]["after"], pushes[2]["after"]
    back = push_payload("octo/app", ref="refs/heads/topic", before=third, after=first, forced=True)

    reverted = _send(deliver, back)

    assert _head(session, repository, "topic") == first
    assert reverted["build_id"] == answers[0]["build_id"]
    assert (reverted["build_status"], reverted["build_attempt"]) == ("queued", 2)
    assert reverted["superseded_build_ids"] == [answers[2]["build_id"]]
    # The pushes that followed the first commit before are its history, not its future: a
    # redelivery of one of them changes nothing.
    again = _send(deliver, pushes[1])
    assert again["superseded_build_ids"] == []
    assert _head(session, repository, "topic") == first
    builds = _builds(session, repository)
    _succeed(session, builds[first])
    assert _latest_green(client, "octo/app", "topic") == first


def test_redelivered_old_pushes_change_nothing(
    deliver: Deliver, make_repository, session: Session, client: TestClient
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository("octo/app")
    pushes = chain("octo/app", "topic")
    guids = [str(uuid.uuid4()) for _ in pushes]
    for push, guid in zip(pushes, guids, strict=True):
        _send(deliver, push, guid)
    builds = _builds(session, repository)
    tip = pushes[-1]["after"]
    _succeed(session, builds[tip])
    before = {b.sha: (b.status, b.attempt) for b in _builds(session, repository).values()}

    same_guid = _send(deliver, pushes[1], guids[1])
    other_guid = _send(deliver, pushes[1])

    assert same_guid["outcome"] == "duplicate"
    assert other_guid["outcome"] == "accepted"
    assert other_guid["superseded_build_ids"] == []
    after = {b.sha: (b.status, b.attempt) for b in _builds(session, repository).values()}
    assert after == before  # the cancelled build of that commit is not queued again
    assert _head(session, repository, "topic") == tip
    assert _latest_green(client, "octo/app", "topic") == tip


def test_a_late_push_records_history_without_a_build_of_its_own(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository("octo/app")
    pushes = chain("octo/app", "topic", 2)
    _send(deliver, pushes[1])

    late = _send(deliver, pushes[0])

    assert late["build_id"] is None
    assert "older than the branch's head" in late["detail"]
    assert set(_builds(session, repository)) == {pushes[1]["after"]}
    session.expire_all()
    recorded = session.get(Push, late["push_id"])
    assert recorded is not None
    assert recorded.decision == "superseded"


def test_a_broken_chain_takes_the_push_github_timed_last(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository("octo/app")
    pushes = chain("octo/app", "topic", 3)
    for n, push in enumerate(pushes):
        push["repository"]["pushed_at"] = 1795000000 + n
    _send(deliver, pushes[2])
    # The second push never arrives; the first arrives last, and GitHub timed it earlier.
    _send(deliver, pushes[0])
    assert _head(session, repository, "topic") == pushes[2]["after"]
    # Without times, the newest known head wins: the last one Cartridge learned of.
    other = chain("octo/app", "other", 3)
    _send(deliver, other[2])
    _send(deliver, other[0])
    assert _head(session, repository, "other") == other[0]["after"]
    # Once the missing push arrives, the chain is whole and its true head wins.
    _send(deliver, other[1])
    assert _head(session, repository, "other") == other[2]["after"]


@pytest.mark.parametrize("seed", range(12))
def test_long_chains_in_random_order_end_at_their_tips(
    seed: int, deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository("octo/app")
    branches = {name: chain("octo/app", name, 12) for name in ("one", "two")}
    deliveries = [push for pushes in branches.values() for push in pushes]
    random.Random(seed).shuffle(deliveries)
    for push in deliveries:
        _send(deliver, push)
    builds = _builds(session, repository)
    for name, pushes in branches.items():
        tip = pushes[-1]["after"]
        assert _head(session, repository, name) == tip
        active = [
            c for c in (p["after"] for p in pushes) if c in builds and not builds[c].status.is_final
        ]
        assert active == [tip]
