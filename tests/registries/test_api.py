"""The registries API: configuring replicas, their health, what each lacks (the CLI on top of it:
tests/cli/test_registry_commands.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.images.references import pull_reference
from app.models import Build, Image, Registry, Repository
from app.registries.queries import record_presence


def _image(session: Session, repository: Repository, n: int) -> Image:
    build = Build(repository_id=repository.id, sha=f"{n:040x}")
    session.add(build)
    session.flush()
    image = Image(
        build_id=build.id,
        name="octo-app",
        tag=build.sha,
        manifest_digest=f"sha256:{n:064x}",
        config_digest=f"sha256:{n + 1000:064x}",
        media_type="application/vnd.docker.distribution.manifest.v2+json",
        size=10,
        layers=[],
    )
    session.add(image)
    session.flush()
    return image


def test_replicas_are_created_listed_updated_and_deleted(
    client: TestClient, auth: dict[str, str]
) -> None:
    created = client.post(
        "/api/v1/registries", json={"name": "r1", "url": "127.0.0.1:5001"}, headers=auth
    )
    assert created.status_code == 201
    assert created.json()["required"] is True
    client.post(
        "/api/v1/registries",
        json={"name": "r2", "url": "10.0.0.2:5000", "required": False},
        headers=auth,
    )

    listed = client.get("/api/v1/registries").json()["items"]
    assert [(r["name"], r["url"], r["required"]) for r in listed] == [
        ("r1", "127.0.0.1:5001", True),
        ("r2", "10.0.0.2:5000", False),
    ]

    updated = client.patch(
        "/api/v1/registries/r2", json={"required": True, "url": "10.0.0.3:5000"}, headers=auth
    )
    assert (updated.json()["required"], updated.json()["url"]) == (True, "10.0.0.3:5000")

    assert client.delete("/api/v1/registries/r2", headers=auth).status_code == 204
    assert client.get("/api/v1/registries/r2").status_code == 404
    assert [r["name"] for r in client.get("/api/v1/registries").json()["items"]] == ["r1"]


def test_writes_need_a_token(client: TestClient) -> None:
    response = client.post("/api/v1/registries", json={"name": "r1", "url": "127.0.0.1:5001"})

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("name", "url", "code"),
    [
        ("r1", "127.0.0.1:5001; include /etc/passwd", "invalid_registry_url"),
        ("r1", "127.0.0.1:5001 backup", "invalid_registry_url"),
        ("r1", "127.0.0.1:70000", "invalid_registry_url"),
        ("r1", "ftp://127.0.0.1:5001", "invalid_registry_url"),
        ("R 1", "127.0.0.1:5001", "invalid_registry_name"),
    ],
)
def test_names_and_urls_that_could_break_the_proxy_config_are_refused(
    client: TestClient, auth: dict[str, str], name: str, url: str, code: str
) -> None:
    response = client.post("/api/v1/registries", json={"name": name, "url": url}, headers=auth)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_a_duplicate_name_conflicts(client: TestClient, auth: dict[str, str]) -> None:
    body = {"name": "r1", "url": "127.0.0.1:5001"}
    client.post("/api/v1/registries", json=body, headers=auth)

    response = client.post("/api/v1/registries", json=body, headers=auth)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "registry_exists"


def test_missing_lists_what_a_replica_lacks_newest_first(
    client: TestClient,
    session: Session,
    make_repository: Callable[..., Repository],
) -> None:
    repository = make_repository()
    r1, r2 = Registry(name="r1", url="127.0.0.1:5001"), Registry(name="r2", url="127.0.0.1:5002")
    session.add_all([r1, r2])
    session.flush()
    images = [_image(session, repository, n) for n in range(1, 4)]
    for image in images:
        record_presence(session, image.id, r1.id, verified_digest=image.manifest_digest, error=None)
    record_presence(
        session, images[0].id, r2.id, verified_digest=images[0].manifest_digest, error=None
    )
    record_presence(session, images[1].id, r2.id, verified_digest=None, error="connection refused")
    r2.healthy, r2.last_error = False, "ConnectError: connection refused"
    session.commit()

    assert client.get("/api/v1/registries/r1/missing").json() == {"items": [], "next_cursor": None}
    page = client.get("/api/v1/registries/r2/missing", params={"limit": 1}).json()
    assert [(i["image_id"], i["state"]) for i in page["items"]] == [(images[2].id, "unknown")]
    page = client.get(
        "/api/v1/registries/r2/missing", params={"limit": 1, "cursor": page["next_cursor"]}
    ).json()
    assert [(i["image_id"], i["state"], i["last_error"]) for i in page["items"]] == [
        (images[1].id, "missing", "connection refused")
    ]
    assert page["next_cursor"] is None  # an exact last page says so, no empty page after it
    bad = client.get("/api/v1/registries/r2/missing", params={"cursor": str(images[1].id)})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_cursor"

    listed = {r["name"]: r for r in client.get("/api/v1/registries").json()["items"]}
    assert (listed["r1"]["missing_images"], listed["r2"]["missing_images"]) == (0, 2)
    assert listed["r2"]["healthy"] is False
    assert listed["r2"]["last_error"] == "ConnectError: connection refused"
    assert client.get("/api/v1/registries/r9/missing").status_code == 404


def test_pull_reference_names_the_image_by_digest_through_the_proxy() -> None:
    digest = "sha256:" + uuid.uuid4().hex * 2

    reference = pull_reference("pull.example.com:5080", "127.0.0.1:5000/octo-app", digest)
    assert reference == f"pull.example.com:5080/octo-app@{digest}"
    reference = pull_reference("pull.example.com:5080", "team/octo-app", digest)
    assert reference == f"pull.example.com:5080/team/octo-app@{digest}"


def test_a_health_check_on_demand_needs_a_write_token(
    client: TestClient, auth: dict[str, str]
) -> None:
    assert client.post("/api/v1/registries/check").status_code == 401
    checked = client.post("/api/v1/registries/check", headers=auth)
    assert checked.status_code == 200
    assert checked.json() == {"items": []}
