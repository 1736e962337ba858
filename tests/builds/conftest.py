"""Fixtures for build tests: a token-protected git server, a registry, the base image, and the
settings a build host runs with."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Repository
from tests.builds.helpers import EXECUTABLES
from tests.support import docker as docker_support
from tests.support.git_server import GitServer, serve_git
from tests.support.paths import REPO_ROOT
from tests.support.registry import RunningRegistry, run_registry

GIT_TOKEN = "ghs_test-token-" + uuid.uuid4().hex
BASE_IMAGE = "cartridge/base:latest"


@pytest.fixture(scope="session")
def base_image() -> str:
    subprocess.run(
        ["bash", "-c", f'source "{REPO_ROOT}/script/lib.sh" && ensure_base_image {BASE_IMAGE}'],
        check=True,
    )
    return BASE_IMAGE


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running
    docker_support.remove_images(f"{running.host}/")


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with serve_git(tmp_path_factory.mktemp("git") / "repositories", GIT_TOKEN) as server:
        yield server


@pytest.fixture
def build_env(
    database_url: str,
    registry: RunningRegistry,
    base_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """Build-host settings for this process and for worker processes (short leases, no build
    network). Tests change entries with `set_build_env`."""
    env = {
        "CARTRIDGE_REGISTRY_URL": registry.host,
        "CARTRIDGE_GIT_TOKEN": GIT_TOKEN,
        "CARTRIDGE_BASE_IMAGE": base_image,
        "CARTRIDGE_BUILD_NETWORK": "none",
        "CARTRIDGE_HOST_NAME": f"test-host-{uuid.uuid4().hex[:6]}",
        "CARTRIDGE_HEARTBEAT_SECONDS": "0.3",
        "CARTRIDGE_LEASE_SECONDS": "3",
        "CARTRIDGE_LEASE_REAPER_INTERVAL_SECONDS": "1",
        "CARTRIDGE_BUILD_LOG_FLUSH_SECONDS": "0.2",
        "CARTRIDGE_BUILD_TIMEOUT_SECONDS": "120",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


@pytest.fixture
def set_build_env(
    build_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., None]:
    def set_values(**values: str) -> None:
        for key, value in values.items():
            name = f"CARTRIDGE_{key.upper()}"
            build_env[name] = value
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    return set_values


@pytest.fixture
def sample_repository(
    session: Session, git_server: GitServer, make_repository: Callable[..., Repository]
) -> Repository:
    full_name = f"octo/app-{uuid.uuid4().hex[:8]}"
    return make_repository(
        full_name,
        clone_url=git_server.clone_url(full_name),
        image_name=full_name.replace("/", "-"),
    )


@pytest.fixture
def push_commit(git_server: GitServer) -> Callable[..., str]:
    def push(repository: Repository, files: dict[str, str], **options: object) -> str:
        options.setdefault("executable", EXECUTABLES)
        return git_server.commit(repository.full_name, dict(files), **options)  # type: ignore[arg-type]

    return push


@pytest.fixture
def run_build(build_env: dict[str, str]) -> Callable[[int], str]:
    """The build task, run in this process. Imported only now: importing `workers.builds` creates
    the Celery app, which must see this run's broker settings, not the defaults."""
    from workers.builds import run_build as task

    return task  # type: ignore[no-any-return]
