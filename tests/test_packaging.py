"""An installed Cartridge (a wheel in a fresh virtualenv, not the source tree) migrates a fresh
database and renders the pull proxy's config: everything it reads at run time ships in the package.

The wheel is built without build isolation and installed without its dependencies, which the new
virtualenv borrows from this one (a `.pth` line), so the test needs no package index."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from app import migrate
from app.db import build_engine
from tests.conftest import _admin, _database_url
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.e2e

# What `pip install .` reads (the Dockerfile copies these too).
SOURCES = ("pyproject.toml", "README.md", "app", "workers", "migrations")


def run(command: list[str | Path], **options: object) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        **options,  # type: ignore[arg-type]
    )
    assert completed.returncode == 0, f"{command}:\n{completed.stdout}\n{completed.stderr}"
    return completed


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with Cartridge's wheel installed (not editable)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    wheels = root / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, source])
    (wheel,) = wheels.glob("cartridge-*.whl")

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run([*pip, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])
    # The dependencies come from this environment, after the new one's own site-packages.
    (new_site,) = (venv / "lib").glob("python3*/site-packages")
    (new_site / "cartridge-test-dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    return venv


@pytest.fixture
def cartridge(venv: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Runs the installed `cartridge` from a directory outside the checkout, with `env`."""

    def invoke(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CARTRIDGE_") and key != "PYTHONPATH"
        }
        clean |= {"CARTRIDGE_STATE_DIR": str(tmp_path / "state"), **env}
        return run([venv / "bin" / "cartridge", *args], cwd=tmp_path, env=clean)

    return invoke


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cartridge.db'}"
        return
    name = f"cartridge_pkg_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_wheel_runs_from_its_own_files_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    code = "import app, migrations; print(app.__file__); print(migrations.__file__)"
    paths = run([venv / "bin" / "python", "-c", code], cwd=tmp_path).stdout.split()
    assert len(paths) == 2
    for path in paths:
        assert Path(path).is_relative_to(venv), path


def test_an_installed_cartridge_migrates_a_fresh_database(cartridge, fresh_database: str) -> None:  # type: ignore[no-untyped-def]
    completed = cartridge("db", "upgrade", CARTRIDGE_DATABASE_URL=fresh_database)
    assert "database at head" in completed.stdout

    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    engine = build_engine(fresh_database)
    try:
        with engine.connect() as connection:
            version = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert version.scalar() == head
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert {"repositories", "builds", "images", "registries", "outbox"} <= tables


def test_an_installed_cartridge_renders_the_proxy_config(cartridge, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {
        "CARTRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'cartridge.db'}",
        "CARTRIDGE_REGISTRY_URL": "127.0.0.1:5999",
        "CARTRIDGE_PROXY_HOST": "127.0.0.1:6080",
    }
    cartridge("db", "upgrade", **env)
    output = tmp_path / "proxy.conf"
    completed = cartridge("proxy-config", "-o", str(output), **env)
    assert f"wrote {output}" in completed.stderr
    config = output.read_text()
    # The replica builds push to (no replica registered yet), behind the configured listener.
    assert "server 127.0.0.1:5999 max_fails=1 fail_timeout=10s;" in config
    assert "listen 127.0.0.1:6080;" in config
    assert "{{" not in config
