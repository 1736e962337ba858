"""A burst of 2,000 pushes over 10 branches, sent 64 at a time to a real server on PostgreSQL in
an order GitHub might deliver them in, ends at the true tip of every branch."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Build, BuildStatus, KnownBranchHead, Push
from tests.conftest import WEBHOOK_SECRET
from tests.support.github import webhook_headers
from tests.support.server import serve
from tests.webhooks.test_history_order import chain

BRANCHES = 10
PUSHES_PER_BRANCH = 200
CONCURRENCY = 64


@pytest.fixture
def server(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.mark.e2e
def test_a_burst_of_pushes_ends_at_the_tip_of_every_branch(
    server: str, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository("octo/app")
    chains = {
        f"burst/{n}": chain("octo/app", f"burst/{n}", PUSHES_PER_BRANCH) for n in range(BRANCHES)
    }
    # Pushed one after another across the branches; delivered out of order within windows of
    # the concurrency, as GitHub's parallel deliveries arrive.
    pushes = [chains[b][i] for i in range(PUSHES_PER_BRANCH) for b in chains]
    rng = random.Random(38)
    for start in range(0, len(pushes), CONCURRENCY):
        window = pushes[start : start + CONCURRENCY]
        rng.shuffle(window)
        pushes[start : start + CONCURRENCY] = window

    def send(payload: dict[str, object]) -> int:
        body = json.dumps(payload).encode()
        headers = webhook_headers("push", body, WEBHOOK_SECRET)
        return httpx.post(
            f"{server}/webhooks/github", content=body, headers=headers, timeout=60
        ).status_code

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        codes = list(pool.map(send, pushes))

    assert codes == [200] * len(pushes)
    session.expire_all()
    assert len(session.scalars(select(Push.id)).all()) == len(pushes)
    heads = dict(
        session.execute(
            select(KnownBranchHead.branch, KnownBranchHead.sha).where(
                KnownBranchHead.repository_id == repository.id
            )
        ).all()
    )
    tips = {branch: pushes_[-1]["after"] for branch, pushes_ in chains.items()}
    assert heads == tips
    active = session.scalars(
        select(Build.sha).where(
            Build.repository_id == repository.id,
            Build.status.in_([BuildStatus.QUEUED.value, BuildStatus.RUNNING.value]),
        )
    ).all()
    assert sorted(active) == sorted(tips.values())
