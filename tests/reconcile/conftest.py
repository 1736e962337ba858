"""A fake GitHub that lists branches and hook deliveries, Cartridge configured to ask it, and
helpers to run reconciler passes and read what they recorded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import get_session_factory
from app.github.client import get_github_client
from app.models import (
    Build,
    KnownBranchHead,
    OutboxMessage,
    Push,
    RepositoryReconciliation,
    StatusPost,
    WebhookDelivery,
)
from app.outbox.relay import reset_relay
from app.reconcile.runs import PassResult, run_pass
from tests.conftest import WEBHOOK_SECRET
from tests.github.conftest import github_env
from tests.support.fake_github import FakeGitHub

ENV = {
    "CARTRIDGE_GITHUB_MUTATION_INTERVAL_SECONDS": "0",
    "CARTRIDGE_RECONCILE_RATE_LIMIT_RESERVE": "0",
}


def sha(n: int, salt: str = "") -> str:
    """A distinct, valid commit SHA for each number (and salt)."""
    import hashlib

    return hashlib.sha256(f"{salt}{n}".encode()).hexdigest()[:40]


@pytest.fixture
def github(database_url: str) -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake, github_env(fake, **ENV):
        fake.webhook_secret = WEBHOOK_SECRET
        yield fake
        assert fake.contract_violations == []


@pytest.fixture(autouse=True)
def _stop_relay_afterwards() -> Iterator[None]:
    yield
    reset_relay()


@pytest.fixture
def reconcile(github: FakeGitHub) -> Callable[[], PassResult]:
    def run() -> PassResult:
        return run_pass(get_session_factory(), get_github_client(), get_settings())

    return run


Deliver = Callable[[str, str, str], dict[str, Any]]


@pytest.fixture
def deliver(github: FakeGitHub, client: TestClient) -> Deliver:
    """Pushes on the fake GitHub with Cartridge up: GitHub delivers the webhook to the app.
    Returns Cartridge's answer to the delivery."""
    answers: list[dict[str, Any]] = []

    def send(body: bytes, headers: dict[str, str]) -> int:
        response = client.post("/webhooks/github", content=body, headers=headers)
        answers.append(response.json())
        return response.status_code

    github.webhook_sender = send

    def push(full_name: str, branch: str, commit: str) -> dict[str, Any]:
        github.webhook_url = "http://testserver/webhooks/github"
        github.push(full_name, branch, commit)
        return answers[-1]

    return push


Counts = dict[str, int]


@pytest.fixture
def counts(session: Session) -> Callable[[], Counts]:
    def count() -> Counts:
        session.expire_all()
        session.rollback()
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (WebhookDelivery, Push, Build, OutboxMessage, StatusPost, KnownBranchHead)
        }

    return count


@pytest.fixture
def snapshot(session: Session) -> Callable[[], dict[str, Any]]:
    """Every row the reconciler may write, but the time and outcome of its last check."""

    def take() -> dict[str, Any]:
        session.expire_all()
        session.rollback()
        tables: dict[str, Any] = {}
        for model in (WebhookDelivery, Push, Build, StatusPost, KnownBranchHead):
            tables[model.__tablename__] = sorted(
                tuple(str(v) for v in row) for row in session.execute(select(model.__table__))
            )
        # The relay marks messages sent meanwhile: that is no write of the reconciler's.
        outbox = select(OutboxMessage.id, OutboxMessage.task_name, OutboxMessage.args)
        tables["outbox"] = sorted(str(tuple(row)) for row in session.execute(outbox))
        tables["listings"] = sorted(
            (r.repository_id, str(r.listing))
            for r in session.scalars(select(RepositoryReconciliation))
        )
        return tables

    return take


def pushes(session: Session, **where: Any) -> list[Push]:
    session.expire_all()
    query = select(Push).filter_by(**where).order_by(Push.id)
    return list(session.scalars(query))


def builds(session: Session) -> list[Build]:
    session.expire_all()
    return list(session.scalars(select(Build).order_by(Build.id)))
