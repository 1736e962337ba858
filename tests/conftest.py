"""Shared fixtures: a throwaway PostgreSQL database, Celery queues and a state directory for each
test process.

Under pytest-xdist (`pytest -n auto`) every worker process is a test process of its own: its
database, queue names and temporary directories carry the run's id and the worker's id
(`gw0`, `gw1`, ...), so workers never see each other's rows or jobs. Session-scoped fixtures
(registries, git servers) are started once per worker. Row factories live in
tests/support/factories.py, loaded here as a plugin.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from app import migrate
from app.broker import get_celery
from app.config import get_settings
from app.db import get_engine, get_session_factory, reset_caches
from app.models import Base
from app.outbox.relay import reset_relay
from tests.support.paths import PAYLOADS_DIR, SCHEMAS_DIR, SHARED_DIR

pytest_plugins = ["tests.support.factories"]

ADMIN_DSN = os.environ.get(
    "CARTRIDGE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CARTRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# pytest-xdist gives its workers the run's id and each worker's name in the environment.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)[:10] + (
    f"_{XDIST_WORKER}" if XDIST_WORKER else ""
)
TEST_DATABASE = f"cartridge_test_{RUN_ID}"
WEBHOOK_SECRET = "global-webhook-secret-for-tests"


def pytest_sessionstart(session: pytest.Session) -> None:
    # The recorded GitHub payloads and the commit-status schema live beside the repository.
    if not SCHEMAS_DIR.is_dir() or not PAYLOADS_DIR.is_dir():
        pytest.exit(
            f"GitHub fixtures not found in {SHARED_DIR} (expected github/payloads and "
            "github/schemas); set CARTRIDGE_SHARED_DIR to the folder that holds them.",
            returncode=4,
        )


def _database_url(name: str) -> str:
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
        connection.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _admin(f'CREATE DATABASE "{TEST_DATABASE}"')
    url = _database_url(TEST_DATABASE)
    env = {
        "CARTRIDGE_DATABASE_URL": url,
        "CARTRIDGE_BROKER_URL": REDIS_URL,
        "CARTRIDGE_BUILD_QUEUE": f"builds-{RUN_ID}",
        "CARTRIDGE_DEFAULT_QUEUE": f"cartridge-{RUN_ID}",
        "CARTRIDGE_STATE_DIR": str(tmp_path_factory.mktemp("state")),
        "CARTRIDGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CARTRIDGE_OUTBOX_RELAY_INTERVAL_SECONDS": "1",
        "CARTRIDGE_OUTBOX_RELAY_GRACE_SECONDS": "0.5",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    reset_caches()
    # A test module that imports `workers` at collection created the Celery app from the default
    # settings (a filesystem broker, queues shared by every run): publish with this run's.
    get_celery.cache_clear()
    migrate.upgrade(url)
    yield url
    reset_relay()
    reset_caches()
    get_celery.cache_clear()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _admin(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "database_url" not in request.fixturenames:
        return
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with get_engine().begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    with get_session_factory()() as db:
        yield db


@pytest.fixture
def app(database_url: str):  # type: ignore[no-untyped-def]
    from app.main import create_app

    reset_relay()
    return create_app()


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def make_token(session: Session):  # type: ignore[no-untyped-def]
    """A clear token of the given scope (read, write or admin)."""
    from app.auth.service import create_token
    from app.models import TokenScope

    def make(scope: str = "admin", name: str = "tests", **fields: object) -> str:
        _, raw = create_token(session, name, TokenScope(scope), **fields)  # type: ignore[arg-type]
        session.commit()
        return raw

    return make


@pytest.fixture
def admin_token(make_token) -> str:  # type: ignore[no-untyped-def]
    return str(make_token("admin"))


@pytest.fixture
def write_token(make_token) -> str:  # type: ignore[no-untyped-def]
    return str(make_token("write"))


@pytest.fixture
def auth(admin_token: str) -> dict[str, str]:
    """Headers with an admin token: allowed everywhere."""
    return {"Authorization": f"Bearer {admin_token}"}


@pytest.fixture
def reads_need_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CARTRIDGE_READ_REQUIRES_TOKEN", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("CARTRIDGE_READ_REQUIRES_TOKEN")
    get_settings.cache_clear()


@pytest.fixture
def tmp_state(tmp_path: Path) -> Path:
    return tmp_path
