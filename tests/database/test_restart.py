"""A PostgreSQL restart: the API answers 503 meanwhile and recovers without being restarted."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import migrate
from app.db import reset_caches
from tests.support.postgres_cluster import PostgresCluster


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    # Not under pytest's tmp dir: the postgres user cannot enter root's private directories.
    directory = Path(tempfile.mkdtemp(prefix="cartridge-pg-"))
    cluster = PostgresCluster(directory)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_api_answers_503_while_postgres_is_down_and_recovers(
    private_postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from app.main import create_app

    migrate.upgrade(private_postgres.url)
    monkeypatch.setenv("CARTRIDGE_DATABASE_URL", private_postgres.url)
    reset_caches()
    try:
        with TestClient(create_app()) as client:
            assert client.get("/readyz").status_code == 200
            assert client.get("/api/v1/builds").status_code == 200

            private_postgres.stop()
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "database_unavailable"
            listing = client.get("/api/v1/builds")
            assert listing.status_code == 503
            assert listing.json()["error"]["code"] == "database_unavailable"
            assert client.get("/healthz").status_code == 200

            private_postgres.start()
            # Pooled connections from before the restart are dead; none of them may leak out.
            for _ in range(3):
                assert client.get("/readyz").status_code == 200
                assert client.get("/api/v1/builds").json()["items"] == []
    finally:
        monkeypatch.setenv("CARTRIDGE_DATABASE_URL", database_url)
        reset_caches()
