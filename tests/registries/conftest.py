"""Fixtures for the replica tests: real `docker-registry` processes, registry rows pointing at
them, and images pushed with the Docker engine and recorded the way the build pipeline does."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Build, BuildStatus, Image, Push, PushDecision, Registry, Repository
from app.models.base import utcnow
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
) -> Callable[..., Image]:
    """Records the build and image rows for a pushed image, as the pipeline does after a push:
    in a repository of its own, or in `repository` as a succeeded build pushed to `branch`,
    created `age` ago."""

    def record(
        pushed: PushedImage,
        *,
        repository: Repository | None = None,
        branch: str | None = None,
        age: timedelta | None = None,
    ) -> Image:
        repository = repository or make_repository(f"octo/{uuid.uuid4().hex[:8]}")
        sha = uuid.uuid4().hex + "0" * 8
        status = BuildStatus.SUCCEEDED if branch else BuildStatus.QUEUED
        build = Build(repository_id=repository.id, sha=sha, status=status)
        session.add(build)
        session.flush()
        if branch is not None:
            session.add(
                Push(
                    repository_id=repository.id,
                    ref=f"refs/heads/{branch}",
                    branch=branch,
                    before_sha="0" * 40,
                    after_sha=sha,
                    build_id=build.id,
                    decision=PushDecision.BUILT,
                )
            )
        image = Image(
            build_id=build.id,
            name=pushed.repository,
            tag=pushed.tag,
            manifest_digest=pushed.manifest_digest,
            config_digest=pushed.config_digest,
            media_type=pushed.media_type,
            size=pushed.size,
            layers=pushed.layers,
            created_at=utcnow() - (age or timedelta()),
        )
        session.add(image)
        session.commit()
        return image

    return record
