"""GET /api/v1/images/{digest} and GET /api/v1/repos/{owner}/{name}/images/{sha}."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.images.service import record
from app.models import Build, Repository

DIGEST = "sha256:" + "d" * 64
SHA = "e" * 40
MakeBuild = Callable[[Repository, str], Build]


def recorded_image(session: Session, make_repository, make_build: MakeBuild) -> Build:  # type: ignore[no-untyped-def]
    build = make_build(make_repository("octo/app", image_name="octo-app"), SHA)
    record(
        session,
        build_id=build.id,
        attempt=1,
        repository_name="octo-app",
        tag=SHA,
        manifest_digest=DIGEST,
        config_digest="sha256:" + "c" * 64,
        media_type="application/vnd.docker.distribution.manifest.v2+json",
        size=1234,
        layers=[{"digest": "sha256:" + "1" * 64, "size": 1000, "media_type": "layer"}],
        roles={"web": "bin/server"},
        labels={"org.opencontainers.image.revision": SHA},
    )
    session.commit()
    return build


def test_an_image_is_found_by_digest_and_by_sha(
    client: TestClient,
    session: Session,
    make_repository,
    make_build: MakeBuild,  # type: ignore[no-untyped-def]
) -> None:
    build = recorded_image(session, make_repository, make_build)

    by_digest = client.get(f"/api/v1/images/{DIGEST}")
    by_sha = client.get(f"/api/v1/repos/octo/app/images/{SHA}")

    assert by_digest.status_code == 200
    assert by_sha.json() == by_digest.json()
    body = by_digest.json()
    assert body["build_id"] == build.id
    assert (body["source_repository"], body["sha"]) == ("octo/app", SHA)
    assert (body["repository"], body["tag"], body["digest"]) == ("octo-app", SHA, DIGEST)
    assert body["size"] == 1234
    assert body["layers"] == [{"digest": "sha256:" + "1" * 64, "size": 1000, "media_type": "layer"}]
    assert body["roles"] == {"web": "bin/server"}
    assert body["labels"] == {"org.opencontainers.image.revision": SHA}


def test_unknown_images_are_404_and_malformed_shas_422(
    client: TestClient,
    session: Session,
    make_repository,
    make_build: MakeBuild,  # type: ignore[no-untyped-def]
) -> None:
    recorded_image(session, make_repository, make_build)

    assert client.get("/api/v1/images/sha256:" + "0" * 64).status_code == 404
    assert client.get("/api/v1/images/not-a-digest").json()["error"]["code"] == "image_not_found"
    assert client.get(f"/api/v1/repos/octo/other/images/{SHA}").status_code == 404
    assert client.get(f"/api/v1/repos/octo/app/images/{'f' * 40}").status_code == 404
    assert client.get("/api/v1/repos/octo/app/images/abc123").status_code == 422
