"""Token scopes, expiry, revocation and the /api/v1/tokens endpoints."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import hash_token, token_allows
from app.cli.main import cli
from app.config import get_settings
from app.models import ApiToken, TokenScope
from app.models.base import utcnow
from tests.support.factories import MakeBuild, MakeRepository

MakeToken = Any


def _bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def _writes(client: TestClient, repository: Any, make_build: MakeBuild) -> dict[str, Any]:
    """One request of each kind a scope decides, as callables of the headers."""
    failed = make_build(repository, status="failed")
    queued = make_build(repository, status="queued")
    return {
        "read": lambda h: client.get(f"/api/v1/builds/{failed.id}", headers=h),
        "retry": lambda h: client.post(f"/api/v1/builds/{failed.id}/retry", headers=h),
        "cancel": lambda h: client.post(f"/api/v1/builds/{queued.id}/cancel", headers=h),
        "register": lambda h: client.post(
            "/api/v1/repos", json={"full_name": "octo/new"}, headers=h
        ),
        "configure": lambda h: client.patch(
            f"/api/v1/repos/{repository.full_name}", json={"build_tags": True}, headers=h
        ),
        "registry": lambda h: client.post(
            "/api/v1/registries", json={"name": "r9", "url": "127.0.0.1:5999"}, headers=h
        ),
        "tokens": lambda h: client.get("/api/v1/tokens", headers=h),
    }


EXPECTED = {
    # scope: the actions it may do; every other action gets 403 insufficient_scope
    "read": {"read"},
    "write": {"read", "retry", "cancel"},
    "admin": {"read", "retry", "cancel", "register", "configure", "registry", "tokens"},
}


@pytest.mark.usefixtures("reads_need_token")
@pytest.mark.parametrize("scope", ["read", "write", "admin"])
def test_each_scope_allows_exactly_its_actions(
    client: TestClient,
    make_repository: MakeRepository,
    make_build: MakeBuild,
    make_token: MakeToken,
    scope: str,
) -> None:
    headers = _bearer(make_token(scope))
    for action, call in _writes(client, make_repository(), make_build).items():
        response = call(headers)
        if action in EXPECTED[scope]:
            assert response.status_code < 300, (scope, action, response.text)
        else:
            assert response.status_code == 403, (scope, action, response.text)
            error = response.json()["error"]
            assert error["code"] == "insufficient_scope"
            assert error["details"]["token_scope"] == scope


@pytest.mark.usefixtures("reads_need_token")
def test_no_token_or_a_wrong_one_is_401_everywhere(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    for action, call in _writes(client, make_repository(), make_build).items():
        for headers in ({}, _bearer("ctg_not-a-real-token")):
            assert call(headers).status_code == 401, action


def test_token_allows_is_the_scope_order() -> None:
    assert not token_allows(None, TokenScope.READ)
    for held in TokenScope:
        token = ApiToken(name="t", token_hash="x", prefix="x", scope=held)
        assert [token_allows(token, s) for s in TokenScope] == [
            list(TokenScope).index(s) <= list(TokenScope).index(held) for s in TokenScope
        ]


def test_a_token_created_through_the_api_is_shown_once_and_stored_hashed(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    created = client.post(
        "/api/v1/tokens", json={"name": "deploy bot", "scope": "read", "expires_in_days": 7}
    )
    assert created.status_code == 401  # creating tokens needs an admin token
    created = client.post(
        "/api/v1/tokens",
        json={"name": "deploy bot", "scope": "read", "expires_in_days": 7},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    raw = body["token"]
    assert raw.startswith("ctg_")
    assert body["prefix"] == raw[:10]
    assert body["scope"] == "read"
    assert body["active"] is True
    assert timedelta(days=6.99) < _parse(body["expires_at"]) - utcnow() <= timedelta(days=7)

    listed = client.get("/api/v1/tokens", headers=auth)
    one = client.get(f"/api/v1/tokens/{body['id']}", headers=auth)
    assert raw not in listed.text + one.text
    assert "token" not in one.json()
    assert [item["name"] for item in listed.json()["items"]] == ["deploy bot", "tests"]
    row = session.scalars(select(ApiToken).where(ApiToken.id == body["id"])).one()
    assert row.token_hash == hash_token(raw)
    assert raw not in row.token_hash

    bad = client.post("/api/v1/tokens", json={"name": "x", "scope": "root"}, headers=auth)
    assert bad.status_code == 422
    assert client.get("/api/v1/tokens/999999", headers=auth).status_code == 404


def _parse(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value)


def test_revocation_applies_to_the_next_request(
    client: TestClient,
    auth: dict[str, str],
    make_token: MakeToken,
    make_repository: MakeRepository,
    make_build: MakeBuild,
) -> None:
    raw = make_token("write", name="leaked")
    build = make_build(make_repository(), status="failed")
    assert client.post(f"/api/v1/builds/{build.id}/retry", headers=_bearer(raw)).status_code == 200
    token_id = next(
        item["id"]
        for item in client.get("/api/v1/tokens", headers=auth).json()["items"]
        if item["name"] == "leaked"
    )
    revoked = client.delete(f"/api/v1/tokens/{token_id}", headers=auth)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert revoked.json()["active"] is False
    again = client.post(f"/api/v1/builds/{build.id}/cancel", headers=_bearer(raw))
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "invalid_token"
    # Revoking twice changes nothing; revoked tokens are listed only when asked for.
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=auth).json() == revoked.json()
    names = [i["name"] for i in client.get("/api/v1/tokens", headers=auth).json()["items"]]
    assert "leaked" not in names
    every = client.get("/api/v1/tokens?include_revoked=true", headers=auth).json()["items"]
    assert "leaked" in [item["name"] for item in every]


def test_an_expired_token_is_refused_and_use_is_recorded(
    client: TestClient,
    make_token: MakeToken,
    make_repository: MakeRepository,
    make_build: MakeBuild,
    session: Session,
) -> None:
    build = make_build(make_repository(), status="queued")
    expired = make_token("admin", name="old", expires_at=utcnow() - timedelta(seconds=1))
    response = client.post(f"/api/v1/builds/{build.id}/cancel", headers=_bearer(expired))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"

    fresh = make_token("write", name="fresh", expires_at=utcnow() + timedelta(hours=1))
    before = utcnow()
    assert (
        client.post(f"/api/v1/builds/{build.id}/cancel", headers=_bearer(fresh)).status_code == 200
    )
    row = session.scalars(select(ApiToken).where(ApiToken.name == "fresh")).one()
    session.refresh(row)
    assert row.last_used_at is not None
    assert row.last_used_at >= before
    assert (
        session.scalars(select(ApiToken).where(ApiToken.name == "old")).one().last_used_at is None
    )


def test_the_cli_creates_lists_and_revokes_tokens(database_url: str, client: TestClient) -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["token", "create", "ci", "--scope", "read"])
    assert created.exit_code == 0, created.output
    raw = created.stdout.strip()
    assert raw.startswith("ctg_")
    assert "not shown again" in created.stderr
    get_settings.cache_clear()

    listed = runner.invoke(cli, ["token", "list"])
    assert listed.exit_code == 0
    header, line = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "SCOPE", "PREFIX"]
    assert line.split()[1:3] == ["ci", "read"]
    assert raw not in listed.stdout
    token_id = line.split()[0]

    assert client.get("/api/v1/builds", headers=_bearer(raw)).status_code == 200
    revoked = runner.invoke(cli, ["token", "revoke", token_id])
    assert revoked.exit_code == 0
    assert f"token {token_id} (ci) revoked" in revoked.stdout
    assert client.post("/api/v1/builds/1/cancel", headers=_bearer(raw)).status_code == 401
    assert "revoked" in runner.invoke(cli, ["token", "list", "--all"]).stdout
    missing = runner.invoke(cli, ["token", "revoke", "999999"])
    assert missing.exit_code == 1
    assert "no token 999999" in missing.stderr
    bad = runner.invoke(cli, ["token", "create", "x", "--scope", "root"])
    assert bad.exit_code == 2


def _production(monkeypatch: pytest.MonkeyPatch, reads_need_token: bool) -> None:
    monkeypatch.setenv("CARTRIDGE_ENVIRONMENT", "production")
    monkeypatch.setenv("CARTRIDGE_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("CARTRIDGE_PUBLIC_URL", "https://cartridge.example.com")
    monkeypatch.setenv("CARTRIDGE_SECRET_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("CARTRIDGE_READ_REQUIRES_TOKEN", str(reads_need_token).lower())
    get_settings.cache_clear()


@pytest.mark.parametrize("reads_need_token", [False, True])
def test_production_with_open_reads_warns_at_start_and_on_readyz(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    reads_need_token: bool,
) -> None:
    from app.main import create_app

    _production(monkeypatch, reads_need_token)
    try:
        with caplog.at_level(logging.WARNING, logger="app.main"):
            app = create_app()
        with TestClient(app) as client:
            ready = client.get("/readyz")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert ready.status_code == 200
    warnings = ready.json()["warnings"]
    logged = [
        r.getMessage() for r in caplog.records if "CARTRIDGE_READ_REQUIRES_TOKEN" in r.getMessage()
    ]
    if reads_need_token:
        assert warnings == []
        assert logged == []
    else:
        assert len(warnings) == 1
        assert "CARTRIDGE_READ_REQUIRES_TOKEN is false" in warnings[0]
        assert len(logged) == 1
