from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK
from app.config import get_settings
from app.models import Build, OutboxMessage
from tests.support.factories import MakeBuild, MakeImage, MakePush, MakeRepository

FINISHED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_detail_shows_pushes_supersession_and_no_image(
    client: TestClient,
    make_repository: MakeRepository,
    make_build: MakeBuild,
    make_push: MakePush,
    session: Session,
) -> None:
    repo = make_repository()
    build = make_build(repo, status="running", build_host="host-1")
    first = make_push(repo, "main", build, before="a" * 40)
    second = make_push(repo, "feature/x", build, forced=True, pusher="hubot")
    newer = make_push(repo, "main")
    build.status, build.cancel_reason = "cancelled", f"Superseded by {newer.after_sha[:7]}"
    build.superseded_by_push_id, build.finished_at = newer.id, FINISHED
    session.commit()

    body = client.get(f"/api/v1/builds/{build.id}").json()
    assert body["status"] == "cancelled"
    assert body["attempt"] == 1
    assert body["build_host"] == "host-1"
    assert body["cancel_reason"].startswith("Superseded by")
    assert body["superseded_by"] == {"push_id": newer.id, "sha": newer.after_sha, "branch": "main"}
    assert [p["id"] for p in body["pushes"]] == [first.id, second.id]
    assert body["pushes"][0]["before"] == "a" * 40
    assert body["pushes"][0]["after"] == build.sha
    assert body["pushes"][1]["forced"] is True
    assert body["pushes"][1]["pusher"] == "hubot"
    assert body["branches"] == ["main", "feature/x"]
    assert body["image"] is None


def test_detail_includes_the_image(
    client: TestClient,
    make_repository: MakeRepository,
    make_build: MakeBuild,
    make_image: MakeImage,
) -> None:
    build = make_build(make_repository(), status="succeeded", finished_at=FINISHED)
    image = make_image(build)
    body = client.get(f"/api/v1/builds/{build.id}").json()
    assert body["image"]["digest"] == image.manifest_digest
    assert body["image"]["tag"] == build.sha
    assert body["image"]["roles"] == {"web": "bin/web", ".shell": "/bin/sh -l"}
    assert body["image"]["labels"] == {"org.opencontainers.image.revision": build.sha}
    proxy = get_settings().proxy_host
    assert body["image"]["reference"] == f"{proxy}/octo-app@{image.manifest_digest}"


def test_unknown_build_is_404(client: TestClient, auth: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/api/v1/builds/999"),
        ("GET", "/api/v1/builds/999/log"),
        ("GET", "/api/v1/builds/999/log/stream"),
        ("POST", "/api/v1/builds/999/retry"),
        ("POST", "/api/v1/builds/999/cancel"),
    ]:
        response = client.request(method, path, headers=auth)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "build_not_found"


def test_retry_starts_a_new_attempt_and_enqueues_it(
    client: TestClient,
    auth: dict[str, str],
    make_repository: MakeRepository,
    make_build: MakeBuild,
    session: Session,
) -> None:
    repo = make_repository()
    for status in ("failed", "errored", "cancelled"):
        build = make_build(
            repo,
            status=status,
            attempt=2,
            started_at=FINISHED,
            finished_at=FINISHED,
            build_host="host-1",
            error="compile exited with 1",
            cancel_reason="Cancelled by someone",
            lease_retries=1,
        )
        response = client.post(f"/api/v1/builds/{build.id}/retry", headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["status"], body["attempt"]) == ("queued", 3)
        assert body["started_at"] is None
        assert body["finished_at"] is None
        assert body["build_host"] is None
        assert body["error"] is None
        assert body["cancel_reason"] is None
        assert datetime.fromisoformat(body["queued_at"]) > FINISHED
        session.expire_all()
        assert session.get(Build, build.id).lease_retries == 0  # type: ignore[union-attr]
        jobs = session.scalars(select(OutboxMessage).where(OutboxMessage.args == [build.id])).all()
        assert [(job.task_name, job.queue) for job in jobs] == [
            (BUILD_TASK, get_settings().build_queue)
        ]


def test_retry_is_refused_unless_the_build_failed_errored_or_was_cancelled(
    client: TestClient,
    auth: dict[str, str],
    make_repository: MakeRepository,
    make_build: MakeBuild,
    session: Session,
) -> None:
    repo = make_repository()
    for status in ("queued", "running", "succeeded"):
        build = make_build(repo, status=status)
        response = client.post(f"/api/v1/builds/{build.id}/retry", headers=auth)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "invalid_transition"
        assert response.json()["error"]["details"]["status"] == status
    assert session.scalars(select(OutboxMessage)).all() == []


def test_cancel_records_who_cancelled(
    client: TestClient, auth: dict[str, str], make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    repo = make_repository()
    for status in ("queued", "running"):
        build = make_build(repo, status=status)
        response = client.post(f"/api/v1/builds/{build.id}/cancel", headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "cancelled"
        assert body["cancel_reason"] == "Cancelled by tests"
        assert body["finished_at"] is not None


def test_cancel_is_refused_once_the_build_is_final(
    client: TestClient, auth: dict[str, str], make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    repo = make_repository()
    for status in ("succeeded", "failed", "errored", "cancelled"):
        build = make_build(repo, status=status, finished_at=FINISHED)
        response = client.post(f"/api/v1/builds/{build.id}/cancel", headers=auth)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "invalid_transition"
        assert client.get(f"/api/v1/builds/{build.id}").json()["status"] == status


def test_retry_and_cancel_need_a_valid_token(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    repo = make_repository()
    failed, queued = make_build(repo, status="failed"), make_build(repo)
    for headers in ({}, {"Authorization": "Bearer ctg_not-a-token"}):
        assert client.post(f"/api/v1/builds/{failed.id}/retry", headers=headers).status_code == 401
        assert client.post(f"/api/v1/builds/{queued.id}/cancel", headers=headers).status_code == 401
    assert client.get(f"/api/v1/builds/{failed.id}").json()["status"] == "failed"
    assert client.get(f"/api/v1/builds/{queued.id}").json()["status"] == "queued"
