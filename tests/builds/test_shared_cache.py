"""A layer cache every build host shares: a second Docker engine, started by the test, reuses the
dependency layer of an image another engine built and pushed."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session

from app.models import Build, Push, Repository
from tests.builds.helpers import log_of, sample_files
from tests.support import engine
from tests.support.registry import RunningRegistry

pytestmark = pytest.mark.e2e

DEPENDENCIES = "#!/bin/sh\nset -e\necho installing dependencies\nmkdir -p vendor\ndate > vendor/x\n"
_DEPENDENCY_STEP = re.compile(
    r'^Step \d+/\d+ : RUN \["/app/container/dependencies"\]\n(?P<next>.*)$', re.MULTILINE
)


@pytest.fixture(scope="module")
def second_engine(base_image: str) -> Iterator[str]:
    """A second build host's engine, with only the base image."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed")
    with engine.second_engine((base_image,)) as url:
        yield url


def test_the_next_commit_on_another_engine_reuses_the_dependency_layer(
    session: Session,
    run_build: Callable[[int], str],
    registry: RunningRegistry,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    make_build: Callable[[Repository, str], Build],
    set_build_env: Callable[..., None],
    second_engine: str,
) -> None:
    files = sample_files({"container/dependencies": DEPENDENCIES, "Gemfile.lock": "rails (8)\n"})

    def build_on_main(changes: dict[str, str]) -> Build:
        files.update(changes)
        sha = push_commit(sample_repository, files)
        build = make_build(sample_repository, sha)
        session.add(
            Push(
                repository_id=sample_repository.id,
                ref="refs/heads/main",
                branch="main",
                before_sha="0" * 40,
                after_sha=sha,
                build_id=build.id,
                decision="built",
            )
        )
        session.commit()
        return build

    first = build_on_main({})
    assert run_build(first.id) == "succeeded"
    first_log = log_of(session, first)
    assert "installing dependencies" in first_log

    set_build_env(docker_host=second_engine)
    second = build_on_main({"app.py": "print('changed')\n"})
    assert run_build(second.id) == "succeeded"
    log = log_of(session, second)
    assert f"{registry.host}/{sample_repository.image_name}@sha256:" in log
    assert "(pulled)" in log
    step = _DEPENDENCY_STEP.search(log)
    assert step is not None, log
    assert step.group("next") == " ---> Using cache"
    assert "installing dependencies" not in log

    # A manifest change on the same engine rebuilds the dependencies: the hit above was earned.
    third = build_on_main({"Gemfile.lock": "rails (9)\n"})
    assert run_build(third.id) == "succeeded"
    assert "installing dependencies" in log_of(session, third)
