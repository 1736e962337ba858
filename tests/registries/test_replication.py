"""Fan-out to real registry replicas: copy, verification by digest, quorum, presence records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Image, ImageReplica, Registry
from app.registries.distribution import OCI_INDEX, accept_header
from app.registries.replication import quorum_met, replicate_image
from tests.support.registry_cluster import PushedImage, RegistryCluster, push_image, read_image

pytestmark = pytest.mark.e2e


def _manifest_bytes(address: str, repository: str, reference: str, media_type: str) -> bytes:
    response = httpx.get(
        f"http://{address}/v2/{repository}/manifests/{reference}",
        headers={"Accept": accept_header(media_type)},
    )
    response.raise_for_status()
    return response.content


def _presence(session: Session, image: Image) -> dict[int, ImageReplica]:
    session.expire_all()
    rows = session.scalars(select(ImageReplica).where(ImageReplica.image_id == image.id))
    return {row.registry_id: row for row in rows}


def test_an_image_pushed_once_is_copied_to_every_replica_and_verified(
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    pushed = push_image(cluster[0].host, repository_path)
    image = record_image(pushed)

    result = replicate_image(image.id)
    session.commit()

    assert result.quorum_met
    assert result.verified_on == ["r1", "r2", "r3"]
    by_name = {o.name: o for o in result.outcomes}
    blob_count = len(pushed.blob_digests())
    assert by_name["r1"].blobs_copied == 0  # the source is only verified
    assert by_name["r2"].blobs_copied == by_name["r3"].blobs_copied == blob_count
    # The manifest arrives byte for byte, so it keeps its digest, by tag and by digest.
    original = _manifest_bytes(cluster[0].host, repository_path, pushed.tag, pushed.media_type)
    for replica in cluster.replicas[1:]:
        for reference in (pushed.tag, pushed.manifest_digest):
            copied = _manifest_bytes(replica.host, repository_path, reference, pushed.media_type)
            assert copied == original
    assert "sha256:" + hashlib.sha256(original).hexdigest() == pushed.manifest_digest

    rows = _presence(session, image)
    assert {row.state for row in rows.values()} == {"present"}
    assert {row.verified_digest for row in rows.values()} == {pushed.manifest_digest}
    assert all(row.verified_at is not None and row.last_error is None for row in rows.values())
    assert quorum_met(session, image.id)


def test_replicating_again_only_verifies(
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    image = record_image(push_image(cluster[0].host, repository_path))
    replicate_image(image.id)
    session.commit()
    uploads_before = [
        sum(1 for method, _, _ in r.requests() if method in ("POST", "PUT", "PATCH"))
        for r in cluster.replicas
    ]

    result = replicate_image(image.id)

    assert result.quorum_met
    assert all(o.blobs_copied == 0 for o in result.outcomes)
    uploads_after = [
        sum(1 for method, _, _ in r.requests() if method in ("POST", "PUT", "PATCH"))
        for r in cluster.replicas
    ]
    assert uploads_after == uploads_before


def test_blobs_of_another_repository_are_mounted_not_sent_again(
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    first = record_image(push_image(cluster[0].host, repository_path + "-a"))
    replicate_image(first.id)
    session.commit()
    # A second repository built on the same base image shares its base layers.
    second_pushed = push_image(cluster[0].host, repository_path + "-b")
    shared = set(second_pushed.blob_digests()) & {str(layer["digest"]) for layer in first.layers}
    assert shared
    second = record_image(second_pushed)

    result = replicate_image(second.id)

    assert result.quorum_met
    for outcome in result.outcomes[1:]:
        assert outcome.blobs_mounted == len(shared)
        assert outcome.blobs_copied == len(second_pushed.blob_digests()) - len(shared)


def test_a_replica_down_during_the_push_breaks_the_quorum_unless_it_allows_for_it(
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
    configure: Callable[..., None],
) -> None:
    image = record_image(push_image(cluster[0].host, repository_path))
    cluster[2].stop()

    result = replicate_image(image.id)
    session.commit()

    assert not result.quorum_met  # every replica is required by default
    assert result.verified_on == ["r1", "r2"]
    down = next(o for o in result.outcomes if o.name == "r3")
    assert down.error
    assert "ConnectError" in down.error
    summary = result.describe()
    assert "quorum NOT met" in summary
    assert "r3:" in summary
    row = _presence(session, image)[replicas[2].id]
    assert (row.state, row.verified_digest) == ("missing", None)
    assert row.last_error == down.error
    assert not quorum_met(session, image.id)

    configure(replica_quorum=2)
    assert quorum_met(session, image.id)
    configure(replica_quorum=3)
    assert not quorum_met(session, image.id)
    replicas[2].required = False
    session.commit()
    assert quorum_met(session, image.id)  # two of the two required replicas


def test_a_replica_that_refuses_uploads_fails_alone(
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    image = record_image(push_image(cluster[0].host, repository_path))
    cluster[2].stop()
    cluster[2].read_only = True
    cluster[2].start()

    result = replicate_image(image.id)

    assert result.verified_on == ["r1", "r2"]
    refused = result.outcomes[2]
    assert refused.error
    assert "POST upload" in refused.error
    assert result.outcomes[1].blobs_copied == len(image.layers) + 1


def test_an_image_the_source_does_not_have_is_verified_nowhere(
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    pushed = push_image(cluster[0].host, repository_path)
    elsewhere = PushedImage(
        repository=repository_path + "-never-pushed",
        tag="v1",
        manifest_digest=pushed.manifest_digest,
        media_type=pushed.media_type,
        config_digest=pushed.config_digest,
        layers=pushed.layers,
        size=pushed.size,
    )
    image = record_image(elsewhere)

    result = replicate_image(image.id)

    assert not result.quorum_met
    assert result.verified_on == []
    assert all(o.error and "HTTP 404" in o.error for o in result.outcomes)


def test_an_index_is_copied_with_the_manifests_it_lists(
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    pushed = push_image(cluster[0].host, repository_path)
    child = _manifest_bytes(
        cluster[0].host, repository_path, pushed.manifest_digest, pushed.media_type
    )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": pushed.media_type,
                    "digest": pushed.manifest_digest,
                    "size": len(child),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    put = httpx.put(
        f"http://{cluster[0].host}/v2/{repository_path}/manifests/multi",
        content=index,
        headers={"Content-Type": OCI_INDEX},
    )
    assert put.status_code == 201, put.text
    index_image = read_image(cluster[0].host, repository_path, pushed.tag)
    image = record_image(
        PushedImage(
            repository=repository_path,
            tag="multi",
            manifest_digest="sha256:" + hashlib.sha256(index).hexdigest(),
            media_type=OCI_INDEX,
            config_digest=index_image.config_digest,
            layers=index_image.layers,
            size=index_image.size,
        )
    )

    result = replicate_image(image.id)

    assert result.quorum_met
    for replica in cluster.replicas[1:]:
        assert _manifest_bytes(replica.host, repository_path, "multi", OCI_INDEX) == index
        assert (
            _manifest_bytes(
                replica.host, repository_path, pushed.manifest_digest, pushed.media_type
            )
            == child
        )


def test_without_configured_replicas_the_push_registry_is_the_one_replica(
    session: Session,
    cluster: RegistryCluster,
    configure: Callable[..., None],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    configure(registry_url=cluster[0].host)
    image = record_image(push_image(cluster[0].host, repository_path))

    result = replicate_image(image.id)
    session.commit()

    assert result.quorum_met
    assert result.verified_on == ["default"]
    registry = session.scalars(select(Registry)).one()
    assert (registry.name, registry.url, registry.required) == ("default", cluster[0].host, True)
