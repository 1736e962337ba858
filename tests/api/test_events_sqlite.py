"""The README's "wait for the next green of main" pipeline (curl, awk), run as written against a
real server on the single-node default, SQLite, where streams poll instead of listening."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import migrate
from app.builds.lifecycle import transition
from app.db import get_session_factory, reset_caches, session_scope
from app.main import create_app
from app.models import Build, BuildStatus, Image, Push, Repository
from app.models.base import utcnow
from app.outbox.relay import reset_relay
from tests.support.server import serve

README = Path(__file__).parents[2] / "README.md"
pytestmark = pytest.mark.e2e  # curl and awk in a shell, as a reader runs them


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cartridge.db'}"
    monkeypatch.setenv("CARTRIDGE_DATABASE_URL", url)
    reset_relay()
    reset_caches()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        reset_relay()
        monkeypatch.setenv("CARTRIDGE_DATABASE_URL", database_url)
        reset_caches()


def readme_pipeline(base_url: str) -> str:
    text = README.read_text()
    found = re.search(r"```sh\n(awk '/\^event: latest_green/.*?)```", text, re.S)
    assert found, "the README's event stream example"
    return found.group(1).replace("http://127.0.0.1:8000", base_url)


def test_the_readme_waits_for_the_next_green_of_main(sqlite_url: str) -> None:
    with get_session_factory()() as session:
        repository = Repository(full_name="octo/hello", clone_url="x", image_name="octo-hello")
        other = Repository(full_name="octo/other", clone_url="y", image_name="octo-other")
        session.add_all([repository, other])
        session.flush()
        builds = {
            name: Build(repository_id=repo.id, sha=sha * 40)
            for name, repo, sha in (
                ("topic", repository, "a"),
                ("main", repository, "b"),
                ("other", other, "c"),
            )
        }
        session.add_all(builds.values())
        session.flush()
        for name, build in builds.items():
            branch = "topic" if name == "topic" else "main"
            session.add(
                Push(
                    repository_id=build.repository_id,
                    ref=f"refs/heads/{branch}",
                    branch=branch,
                    before_sha="0" * 40,
                    after_sha=build.sha,
                    build_id=build.id,
                )
            )
            session.add(
                Image(
                    build_id=build.id,
                    name="octo-hello",
                    tag=build.sha,
                    manifest_digest="sha256:" + build.sha[0] * 64,
                    config_digest="sha256:" + "c" * 64,
                    media_type="application/vnd.oci.image.manifest.v1+json",
                    size=1,
                )
            )
        session.commit()
        ids = {name: build.id for name, build in builds.items()}

    with serve(create_app()) as url:
        waiting = subprocess.Popen(
            ["bash", "-c", readme_pipeline(url)], stdout=subprocess.PIPE, text=True
        )
        try:
            time.sleep(1.5)  # the stream is open
            # Green builds of another branch and another repository do not end the wait.
            for name in ("topic", "other", "main"):
                with session_scope() as session:
                    transition(session, ids[name], BuildStatus.RUNNING, started_at=utcnow())
                with session_scope() as session:
                    transition(session, ids[name], BuildStatus.SUCCEEDED, finished_at=utcnow())
                if name != "main":
                    time.sleep(1)
                    assert waiting.poll() is None, "the wait ended on the wrong build"
            # It ends with the event, not when the stream next writes (its keep-alive is 15 s).
            output, _ = waiting.communicate(timeout=10)
        finally:
            waiting.kill()
    assert output.strip() == f"127.0.0.1:5080/octo-hello@sha256:{'b' * 64}"
