"""`POST /api/v1/repos/{owner}/{name}/sync` and `cartridge repo sync`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.cli.main import cli
from tests.github.conftest import forget_settings, github_env
from tests.reconcile.conftest import ENV, sha
from tests.support.fake_github import FakeGitHub
from tests.support.server import serve


def test_sync_reconciles_now_and_answers_what_it_found(
    github: FakeGitHub, client: TestClient, auth, make_repository
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    github.set_branches("octo/app", {"main": sha(0), "old": sha(9)})
    first = client.post("/api/v1/repos/octo/app/sync", headers=auth)
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "adopted"
    assert first.json()["adopted"] == 1  # "old"; main's head is built
    github.push("octo/app", "topic", sha(1))
    github.delete_branch("octo/app", "old")

    found = client.post("/api/v1/repos/octo/app/sync", headers=auth).json()

    assert found["outcome"] == "recovered"
    assert found["repository"] == "octo/app"
    assert found["branches"] == 2
    recovered = {push["branch"]: push for push in found["recovered"]}
    assert recovered["topic"]["after"] == sha(1)
    assert recovered["topic"]["build_status"] == "queued"
    assert recovered["old"]["deleted"] is True
    unchanged = client.post("/api/v1/repos/octo/app/sync", headers=auth).json()
    assert unchanged["outcome"] == "unchanged"
    assert unchanged["recovered"] == []
    shown = client.get("/api/v1/repos/octo/app").json()["last_reconciliation"]
    assert shown["outcome"] == "unchanged"
    listed = client.get("/api/v1/repos").json()["items"]
    assert listed[0]["last_reconciliation"]["outcome"] == "unchanged"


def test_sync_needs_a_token_and_a_known_repository(
    github: FakeGitHub, client: TestClient, auth, make_repository
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    assert client.post("/api/v1/repos/octo/app/sync").status_code == 401
    missing = client.post("/api/v1/repos/octo/nope/sync", headers=auth)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "repository_not_found"
    assert github.requests == []


def test_sync_reports_what_github_said(
    github: FakeGitHub, client: TestClient, auth, make_repository
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")  # not on the fake GitHub: 404 there
    refused = client.post("/api/v1/repos/octo/app/sync", headers=auth)
    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "github_failed"
    assert "404" in refused.json()["error"]["message"]
    github.set_branches("octo/app", {"main": sha(0)})
    github.secondary_rate_limit_next(retry_after=60)
    limited = client.post("/api/v1/repos/octo/app/sync", headers=auth)
    assert limited.status_code == 503
    assert limited.json()["error"]["code"] == "github_rate_limited"
    assert "retry_at" in limited.json()["error"]["details"]


def test_sync_without_github_credentials_is_a_clear_409(
    client: TestClient, auth, make_repository
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    answer = client.post("/api/v1/repos/octo/app/sync", headers=auth)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "github_not_configured"


@pytest.fixture
def api_url(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


def test_cartridge_repo_sync(
    api_url: str, write_token: str, make_repository, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    with FakeGitHub() as fake, github_env(fake, **ENV):
        fake.set_branches("octo/app", {"main": sha(0)})
        env = {"CARTRIDGE_API_URL": api_url, "CARTRIDGE_TOKEN": write_token}
        CliRunner().invoke(cli, ["repo", "sync", "octo/app"], env=env)
        fake.push("octo/app", "topic", sha(1))
        result = CliRunner().invoke(cli, ["repo", "sync", "octo/app"], env=env)
    forget_settings()
    assert result.exit_code == 0, result.output
    assert "octo/app: recovered (2 branches, 1 requests to GitHub)" in result.output
    assert f"topic: 0000000 -> {sha(1)[:7]}, build" in result.output
