"""Fixtures for commit status tests: a fake GitHub and settings that point at it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.builds.transitions import transition
from app.config import get_settings
from app.github.client import get_github_client
from app.models import ACTIVE_STATUSES, FINAL_STATUSES, Build, BuildStatus, Push
from tests.support.fake_github import DEFAULT_TOKEN, FakeGitHub


def forget_settings() -> None:
    get_settings.cache_clear()
    get_github_client.cache_clear()


@contextmanager
def github_env(fake: FakeGitHub, **extra: str) -> Iterator[dict[str, str]]:
    """CARTRIDGE_* variables that make Cartridge post statuses to `fake` with its token."""
    env = {
        "CARTRIDGE_GITHUB_API_URL": fake.url,
        "CARTRIDGE_GITHUB_TOKEN": DEFAULT_TOKEN,
        "CARTRIDGE_GITHUB_TIMEOUT_SECONDS": "1",
        "CARTRIDGE_GITHUB_STATUS_RETRY_BASE_SECONDS": "0.5",
        "CARTRIDGE_GITHUB_STATUS_RETRY_MAX_SECONDS": "2",
        "CARTRIDGE_PUBLIC_URL": "https://cartridge.example.com",
        **extra,
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        forget_settings()
        try:
            yield env
        finally:
            patch.undo()
            forget_settings()


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def github(fake_github: FakeGitHub, database_url: str) -> Iterator[FakeGitHub]:
    """The fake GitHub, with Cartridge configured to post to it."""
    with github_env(fake_github):
        yield fake_github


def retry(session: Session, build_id: int) -> None:
    """A retry the way the API and the webhook receiver make one: the move back to queued, then
    the next attempt number, in one transaction."""
    assert transition(session, build_id, BuildStatus.QUEUED, expected=FINAL_STATUSES, error=None)
    session.execute(
        update(Build)
        .where(Build.id == build_id)
        .values(attempt=Build.attempt + 1)
        .execution_options(synchronize_session=False)
    )


def supersede(session: Session, build: Build, after_sha: str = "1a2b3c4" + "d" * 33) -> None:
    """A newer push to the build's branch cancels it, the way the webhook receiver does."""
    push = Push(
        repository_id=build.repository_id,
        ref="refs/heads/topic",
        branch="topic",
        before_sha=build.sha,
        after_sha=after_sha,
    )
    session.add(push)
    session.flush()
    assert transition(
        session,
        build.id,
        BuildStatus.CANCELLED,
        expected=ACTIVE_STATUSES,
        superseded_by_push_id=push.id,
        cancel_reason=f"Superseded by {after_sha[:7]}",
    )
