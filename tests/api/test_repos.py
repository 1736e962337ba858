from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Repository
from app.repos.schemas import default_image_name

SECRET = "a-repository-webhook-secret"


def _register(client: TestClient, auth: dict[str, str], **body: object) -> dict[str, object]:
    response = client.post("/api/v1/repos", json={"full_name": "octo/app", **body}, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_register_fills_defaults_and_never_returns_the_secret(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    created = _register(client, auth, full_name="Octo/My_App", webhook_secret=SECRET)

    assert created["clone_url"] == "https://github.com/Octo/My_App.git"
    assert created["image_name"] == "octo-my_app"
    assert created["default_branch"] == "main"
    assert created["has_webhook_secret"] is True
    assert created["effective_protected_branches"] == ["main"]
    assert SECRET not in str(created)
    fetched = client.get("/api/v1/repos/Octo/My_App").json()
    assert fetched == created
    assert SECRET not in client.get("/api/v1/repos").text
    stored = session.scalar(select(Repository).where(Repository.full_name == "Octo/My_App"))
    assert stored is not None
    assert stored.webhook_secret == SECRET


def test_register_keeps_every_given_setting(client: TestClient, auth: dict[str, str]) -> None:
    created = _register(
        client,
        auth,
        clone_url="git@github.com:octo/app.git",
        default_branch="trunk",
        image_name="team/app",
        branch_filters=["main", "release/*"],
        build_tags=True,
        base_image="registry.local/base:2",
        cancel_superseded=False,
        protected_branches=["trunk", "release/*"],
    )
    assert created["clone_url"] == "git@github.com:octo/app.git"
    assert created["image_name"] == "team/app"
    assert created["branch_filters"] == ["main", "release/*"]
    assert created["build_tags"] is True
    assert created["base_image"] == "registry.local/base:2"
    assert created["cancel_superseded"] is False
    assert created["effective_protected_branches"] == ["trunk", "release/*"]
    assert created["has_webhook_secret"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"full_name": "no-slash"},
        {"full_name": "octo/app/extra"},
        {"full_name": "-octo/app"},
        {"full_name": "octo/app", "image_name": "Upper/Case"},
        {"full_name": "octo/app", "clone_url": "not a url"},
        {"full_name": "octo/app", "default_branch": "bad..branch"},
        {"full_name": "octo/app", "default_branch": "with space"},
        {"full_name": "octo/app", "webhook_secret": ""},
        {"full_name": "octo/app", "unknown_field": 1},
    ],
)
def test_register_rejects_invalid_values(
    client: TestClient, auth: dict[str, str], body: dict[str, object]
) -> None:
    response = client.post("/api/v1/repos", json=body, headers=auth)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_a_name_registers_once_whatever_its_case(client: TestClient, auth: dict[str, str]) -> None:
    _register(client, auth)
    for name in ("octo/app", "OCTO/App"):
        response = client.post("/api/v1/repos", json={"full_name": name}, headers=auth)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "repository_exists"


def test_unknown_repository_is_404(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/api/v1/repos/octo/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "repository_not_found"
    patched = client.patch("/api/v1/repos/octo/nothing", json={"build_tags": True}, headers=auth)
    assert patched.status_code == 404


def test_list_pages_through_every_repository_in_name_order(
    client: TestClient, auth: dict[str, str]
) -> None:
    names = [f"octo/app-{i:02d}" for i in range(7)]
    for name in reversed(names):
        _register(client, auth, full_name=name)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/repos", params=params).json()
        seen.extend(item["full_name"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names


def test_configure_changes_only_the_given_fields(client: TestClient, auth: dict[str, str]) -> None:
    _register(client, auth, base_image="base:1", branch_filters=["main"])
    response = client.patch(
        "/api/v1/repos/octo/app",
        json={"webhook_secret": SECRET, "protected_branches": ["main", "prod"], "base_image": None},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["has_webhook_secret"] is True
    assert body["effective_protected_branches"] == ["main", "prod"]
    assert body["base_image"] is None
    assert body["branch_filters"] == ["main"]
    assert SECRET not in response.text

    cleared = client.patch("/api/v1/repos/octo/app", json={"webhook_secret": None}, headers=auth)
    assert cleared.json()["has_webhook_secret"] is False


def test_configure_refuses_to_clear_required_fields(
    client: TestClient, auth: dict[str, str]
) -> None:
    _register(client, auth)
    response = client.patch("/api/v1/repos/octo/app", json={"image_name": None}, headers=auth)
    assert response.status_code == 422
    assert client.get("/api/v1/repos/octo/app").json()["image_name"] == "octo-app"


def test_writes_need_a_valid_token(client: TestClient, auth: dict[str, str]) -> None:
    missing = client.post("/api/v1/repos", json={"full_name": "octo/app"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    bad = client.post(
        "/api/v1/repos", json={"full_name": "octo/app"}, headers={"Authorization": "Bearer nope"}
    )
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_token"
    assert client.get("/api/v1/repos").json()["items"] == []
    _register(client, auth)
    patched = client.patch("/api/v1/repos/octo/app", json={"build_tags": True})
    assert patched.status_code == 401


@pytest.mark.usefixtures("reads_need_token")
def test_reads_need_a_token_when_configured(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/api/v1/repos").status_code == 401
    assert client.get("/api/v1/repos/octo/app").status_code == 401
    assert client.get("/api/v1/repos", headers=auth).status_code == 200


def test_default_image_name_is_a_valid_docker_repository() -> None:
    assert default_image_name("octo/app") == "octo-app"
    assert default_image_name("Octo/.Weird--Name_") == "octo-weird-name"


NO_LIMITS = {"memory": None, "swap": None, "cpus": None, "pids": None, "disk": None}


def test_build_limits_are_stored_in_bytes_and_changed_key_by_key(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    assert _register(client, auth, full_name="octo/plain")["build_limits"] == NO_LIMITS
    created = _register(
        client, auth, build_limits={"memory": "4g", "cpus": 1.5, "pids": 2048, "swap": 0}
    )
    # 0 is a limit of its own (no swap), not "the installation's".
    expected = {**NO_LIMITS, "memory": 4 << 30, "cpus": 1.5, "pids": 2048, "swap": 0}
    assert created["build_limits"] == expected
    assert client.get("/api/v1/repos/octo/app").json()["build_limits"] == created["build_limits"]

    changed = client.patch(
        "/api/v1/repos/octo/app",
        json={"build_limits": {"disk": "20GiB", "pids": None}},
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["build_limits"] == {
        **NO_LIMITS,
        "memory": 4 << 30,
        "cpus": 1.5,
        "swap": 0,
        "disk": 20 << 30,
    }
    stored = session.scalar(select(Repository).where(Repository.full_name == "octo/app"))
    assert stored is not None
    assert stored.build_limits == {"memory": 4 << 30, "cpus": 1.5, "swap": 0, "disk": 20 << 30}

    untouched = client.patch("/api/v1/repos/octo/app", json={"build_tags": True}, headers=auth)
    assert untouched.json()["build_limits"] == changed.json()["build_limits"]
    cleared = client.patch("/api/v1/repos/octo/app", json={"build_limits": None}, headers=auth)
    assert cleared.json()["build_limits"] == NO_LIMITS
    session.expire_all()
    stored = session.scalar(select(Repository).where(Repository.full_name == "octo/app"))
    assert stored is not None
    assert stored.build_limits is None


@pytest.mark.parametrize(
    "limits",
    [
        {"memory": "lots"},
        {"memory": "1m"},
        {"memory": -1},
        {"memory": True},
        {"disk": "2x"},
        {"cpus": 0},
        {"pids": 3},
        {"network": "host"},
    ],
)
def test_invalid_build_limits_are_refused_and_change_nothing(
    client: TestClient, auth: dict[str, str], limits: dict[str, object]
) -> None:
    _register(client, auth, build_limits={"memory": "1g"})
    for response in (
        client.post(
            "/api/v1/repos", json={"full_name": "octo/other", "build_limits": limits}, headers=auth
        ),
        client.patch("/api/v1/repos/octo/app", json={"build_limits": limits}, headers=auth),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"
    assert client.get("/api/v1/repos/octo/app").json()["build_limits"]["memory"] == 1 << 30
    assert client.get("/api/v1/repos/octo/other").status_code == 404
