"""Fixtures for the replica tests: real `docker-registry` processes, registry rows pointing at
them, and images pushed with the Docker engine and recorded the way the build pipeline does."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Build, Image, Registry, Repository
from tests.support.registry_cluster import PushedImage, RegistryCluster, registry_cluster


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Sets CARTRIDGE_* settings for one test: configure(replica_quorum=2)."""

    def apply(**values: object) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"CARTRIDGE_{key.upper()}", str(value))
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RegistryCluster]:
    with registry_cluster(tmp_path / "registries", count=3) as replicas:
        yield replicas


@pytest.fixture
def replicas(
    session: Session, cluster: RegistryCluster, configure: Callable[..., None]
) -> list[Registry]:
    """The three replicas registered (all required); builds push to the first."""
    configure(registry_url=cluster[0].host)
    rows = [Registry(name=r.name, url=r.host, required=True) for r in cluster.replicas]
    session.add_all(rows)
    session.commit()
    return rows


@pytest.fixture
def repository_path() -> str:
    return f"cartridge-test/app-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def record_image(
    session: Session, make_repository: Callable[..., Repository]
) -> Callable[[PushedImage], Image]:
    """Records the build and image rows for a pushed image, as the pipeline does after a push."""

    def record(pushed: PushedImage) -> Image:
        repository = make_repository(f"octo/{uuid.uuid4().hex[:8]}")
        build = Build(repository_id=repository.id, sha=uuid.uuid4().hex + "0" * 8)
        session.add(build)
        session.flush()
        image = Image(
            build_id=build.id,
            name=pushed.repository,
            tag=pushed.tag,
            manifest_digest=pushed.manifest_digest,
            config_digest=pushed.config_digest,
            media_type=pushed.media_type,
            size=pushed.size,
            layers=pushed.layers,
        )
        session.add(image)
        session.commit()
        return image

    return record
