"""The periodic job: replica health, and repair of a replica that was down during a push."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Image, OutboxMessage, Registry
from app.models.base import utcnow
from app.registries.queries import claim_repair
from app.registries.replication import quorum_met, replicate_image
from tests.support.registry import RunningRegistry
from tests.support.registry_cluster import (
    PushedImage,
    RegistryCluster,
    push_image,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def tasks(database_url: str) -> ModuleType:
    # Imported once the test settings are in place, so the Celery app uses the test broker.
    import workers.replication

    return workers.replication


def _repair_jobs(session: Session) -> list[list[object]]:
    session.expire_all()
    query = select(OutboxMessage).where(OutboxMessage.task_name == "cartridge.registries.repair")
    return [message.args for message in session.scalars(query)]


def test_the_worker_runs_the_health_check_periodically(tasks: ModuleType) -> None:
    from workers.celery_app import celery_app

    assert "workers.replication" in celery_app.conf.include
    schedules = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert tasks.CHECK_TASK in schedules


def test_health_is_recorded_and_a_401_counts_as_healthy(
    tasks: ModuleType,
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    tmp_path: Path,
) -> None:
    with_auth = RunningRegistry(
        tmp_path / "r-auth",
        name="r-auth",
        extra_config="auth:\n  silly:\n    realm: cartridge-tests\n    service: cartridge\n",
    )
    with_auth.start()
    try:
        session.add(Registry(name="r-auth", url=with_auth.host))
        session.commit()
        cluster[1].stop()

        errors = tasks.check_replicas()
    finally:
        with_auth.stop()

    assert errors["r1"] is None
    assert errors["r-auth"] is None
    assert errors["r2"]
    assert "ConnectError" in errors["r2"]
    session.expire_all()
    health = {r.name: (r.healthy, r.last_error) for r in session.scalars(select(Registry))}
    assert health["r2"] == (False, errors["r2"])
    assert health["r-auth"] == (True, None)
    assert all(r.last_checked_at is not None for r in session.scalars(select(Registry)))


def test_a_replica_down_during_a_push_is_repaired_when_it_is_back(
    tasks: ModuleType,
    session: Session,
    client: TestClient,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    image = record_image(push_image(cluster[0].host, repository_path))
    cluster[2].stop()
    assert not replicate_image(image.id).quorum_met
    session.commit()

    tasks.check_replicas()  # r3 is still down: recorded unhealthy, nothing to repair from there yet
    assert _repair_jobs(session) == []
    missing = client.get("/api/v1/registries/r3/missing").json()["items"]
    assert [(i["image_id"], i["state"]) for i in missing] == [(image.id, "missing")]
    listed = {r["name"]: r for r in client.get("/api/v1/registries").json()["items"]}
    assert listed["r3"]["healthy"] is False
    assert listed["r3"]["missing_images"] == 1

    cluster[2].start()
    tasks.check_replicas()
    assert _repair_jobs(session) == [[replicas[2].id]]

    assert tasks.repair_replica(replicas[2].id) == 1

    assert client.get("/api/v1/registries/r3/missing").json()["items"] == []
    listed = {r["name"]: r for r in client.get("/api/v1/registries").json()["items"]}
    assert (listed["r3"]["healthy"], listed["r3"]["missing_images"]) == (True, 0)
    session.expire_all()
    assert quorum_met(session, image.id)
    blob_uploads = [
        path for method, path, status in cluster[2].requests() if method == "PUT" and status == 201
    ]
    assert len(blob_uploads) == len(image.layers) + 2  # every blob, the config, the manifest


def test_overlapping_repairs_of_one_replica_do_nothing_twice(
    tasks: ModuleType,
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    image = record_image(push_image(cluster[0].host, repository_path))
    cluster[2].stop()
    replicate_image(image.id)
    session.commit()
    cluster[2].start()
    assert claim_repair(session, replicas[2].id, utcnow() + timedelta(minutes=5))
    session.commit()

    assert tasks.repair_replica(replicas[2].id) == 0
    assert not any(method == "PUT" for method, _, _ in cluster[2].requests())
