"""Retention against real replicas: images no rule keeps are taken out of service and deleted by
digest on every replica; a replica with deletes disabled is reported, never retried."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli.main import cli
from app.config import get_settings
from app.models import (
    DeletionState,
    Image,
    ImageDeletion,
    Registry,
    Repository,
)
from app.models.base import utcnow
from app.registries import queries as registry_queries
from app.registries.distribution import DOCKER_MANIFEST, accept_header
from app.registries.replication import replicate_image
from app.retention.service import apply
from tests.support.registry import RunningRegistry
from tests.support.registry_cluster import push_image
from workers.retention import delete_from_replica

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_replicas(tmp_path: Path) -> Iterator[tuple[RunningRegistry, RunningRegistry]]:
    """r1 deletes; r2 has deletes disabled, as Distribution's default config does."""
    r1 = RunningRegistry(tmp_path / "r1", name="r1")
    r2 = RunningRegistry(tmp_path / "r2", name="r2", deletes_enabled=False)
    r1.start()
    r2.start()
    try:
        yield r1, r2
    finally:
        r1.stop()
        r2.stop()


def _manifest(registry: RunningRegistry, image: Image) -> int:
    response = httpx.get(
        f"{registry.url}/v2/{image.name}/manifests/{image.manifest_digest}",
        headers={"Accept": accept_header(DOCKER_MANIFEST)},
        timeout=10,
    )
    return response.status_code


def test_prune_deletes_by_digest_on_every_replica_and_keeps_what_a_rule_keeps(
    session: Session,
    client: TestClient,
    auth: dict[str, str],
    configure: Callable[..., None],
    make_repository: Callable[..., Repository],
    two_replicas: tuple[RunningRegistry, RunningRegistry],
    repository_path: str,
    record_image: Callable[..., Image],
) -> None:
    r1, r2 = two_replicas
    configure(
        registry_url=r1.host,
        retention_keep_last=1,
        retention_keep_days=7,
        retention_keep_pulled_days=7,
    )
    session.add_all([Registry(name="r1", url=r1.host), Registry(name="r2", url=r2.host)])
    repository = make_repository("octo/app", image_name=repository_path)
    images: list[Image] = []
    for _ in range(4):
        image = record_image(
            push_image(r1.host, repository_path),
            repository=repository,
            branch="main",
            age=timedelta(days=60),
        )
        assert replicate_image(image.id).quorum_met
        session.commit()
        images.append(image)
    oldest, pinned, pulled, newest = images
    pinned.pinned = True
    pulled.last_pulled_at = utcnow() - timedelta(days=1)
    session.commit()

    dry = CliRunner().invoke(cli, ["images", "prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"delete octo/app {oldest.tag[:12]} {oldest.manifest_digest}" in dry.output
    assert "(pinned)" in dry.output
    assert "(pulled in the last 7 days)" in dry.output
    assert "latest green of main; among the last 1 of main; the repository's newest image" in (
        dry.output
    )

    assert apply(session, get_settings(), limit=10) == [oldest.id]
    session.commit()
    deletions = list(session.scalars(select(ImageDeletion).order_by(ImageDeletion.registry_name)))
    assert [(d.registry_name, d.state) for d in deletions] == [
        ("r1", DeletionState.QUEUED),
        ("r2", DeletionState.QUEUED),
    ]
    # Taken out of service at once, before any replica answered.
    gone = client.get(f"/api/v1/images/{oldest.manifest_digest}")
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "image_deleted")
    assert registry_queries.images_to_repair(session, deletions[1].registry_id, limit=10) == []

    assert [delete_from_replica(d.id) for d in deletions] == ["done", "refused"]
    assert delete_from_replica(deletions[0].id) == "nothing to do"  # a duplicate job
    session.expire_all()
    assert (_manifest(r1, oldest), _manifest(r2, oldest)) == (404, 200)
    assert [_manifest(r1, image) for image in (pinned, pulled, newest)] == [200, 200, 200]
    refused = session.get_one(ImageDeletion, deletions[1].id)
    assert (refused.response_code, refused.state) == (405, DeletionState.REFUSED)
    listed = CliRunner().invoke(cli, ["images", "deletions"])
    assert f"refused r2 {oldest.manifest_digest}" in listed.output
    metrics = client.get("/metrics").text
    assert 'cartridge_image_deletions{state="refused"} 1.0' in metrics
    assert "deletes disabled" in (refused.last_error or "")
    # Not every replica dropped it: the image is still being deleted, not deleted.
    assert session.get_one(Image, oldest.id).deleted_at is None

    latest = client.get("/api/v1/repos/octo/app/branches/main/latest-green").json()
    assert latest["image"]["digest"] == newest.manifest_digest
    unpinned = client.delete(f"/api/v1/images/{pinned.manifest_digest}/pin", headers=auth)
    assert (unpinned.status_code, unpinned.json()["pinned"]) == (200, False)
