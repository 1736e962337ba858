"""GET /api/v1/images/{digest} and GET /api/v1/repos/{owner}/{name}/images/{sha}."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.images.service import record
from app.models import Build, ImageReplica, Registry, Repository
from app.models.base import utcnow

DIGEST = "sha256:" + "d" * 64
SHA = "e" * 40
MakeBuild = Callable[[Repository, str], Build]


def recorded_image(session: Session, make_repository, make_build: MakeBuild, roles=None) -> Build:  # type: ignore[no-untyped-def]
    build = make_build(make_repository("octo/app", image_name="octo-app"), SHA)
    image = record(
        session,
        build_id=build.id,
        attempt=1,
        image_name="octo-app",
        tag=SHA,
        manifest_digest=DIGEST,
        config_digest="sha256:" + "c" * 64,
        media_type="application/vnd.docker.distribution.manifest.v2+json",
        size=1234,
        layers=[{"digest": "sha256:" + "1" * 64, "size": 1000, "media_type": "layer"}],
        roles=roles or {"web": "bin/server"},
        labels={"org.opencontainers.image.revision": SHA},
    )
    one = Registry(name="one", url="127.0.0.1:5001", required=True)
    two = Registry(name="two", url="127.0.0.1:5002", required=False)
    three = Registry(name="three", url="127.0.0.1:5003", required=True)
    session.add_all([one, two, three])
    session.flush()
    session.add_all(
        [
            ImageReplica(
                image_id=image.id,
                registry_id=one.id,
                state="present",
                verified_digest=DIGEST,
                verified_at=utcnow(),
            ),
            ImageReplica(image_id=image.id, registry_id=two.id, state="missing"),
        ]
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
    assert (body["build_id"], body["build_status"]) == (build.id, "queued")
    assert body["reference"] == f"127.0.0.1:5080/octo-app@{DIGEST}"
    assert [(r["registry"], r["required"], r["present"]) for r in body["replicas"]] == [
        ("one", True, True),
        ("three", True, False),
        ("two", False, False),
    ]
    assert (body["source_repository"], body["sha"]) == ("octo/app", SHA)
    assert (body["name"], body["tag"], body["digest"]) == ("octo-app", SHA, DIGEST)
    assert body["size"] == 1234
    assert body["layers"] == [{"digest": "sha256:" + "1" * 64, "size": 1000, "media_type": "layer"}]
    assert body["roles"] == {"web": "bin/server"}
    # An image stored with command lines only (as before stop signals existed) stops on TERM.
    assert body["stop_signals"] == {"web": "TERM"}
    assert body["labels"] == {"org.opencontainers.image.revision": SHA}


def test_roles_in_the_object_form_show_their_command_and_stop_signal(
    client: TestClient,
    session: Session,
    make_repository,
    make_build: MakeBuild,  # type: ignore[no-untyped-def]
) -> None:
    roles = {"web": "bin/server", "resque": {"command": "rake resque:work", "stop_signal": "QUIT"}}
    build = recorded_image(session, make_repository, make_build, roles=roles)

    body = client.get(f"/api/v1/images/{DIGEST}").json()
    assert body["roles"] == {"web": "bin/server", "resque": "rake resque:work"}
    assert body["stop_signals"] == {"web": "TERM", "resque": "QUIT"}
    image = client.get(f"/api/v1/builds/{build.id}").json()["image"]
    assert (image["roles"], image["stop_signals"]) == (body["roles"], body["stop_signals"])


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
