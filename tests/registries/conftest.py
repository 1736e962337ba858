"""Fixtures for the replica tests: real `docker-registry` processes and registry rows pointing at
them (`record_image` in tests/support/factories.py records pushed images)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Registry
from tests.support.registry_cluster import RegistryCluster, registry_cluster


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
