"""Real base images: built with debootstrap, pushed to the registry, and pulled by digest by a build
host that lacks them (never from anywhere else)."""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.models import Build, Repository
from tests.builds.helpers import log_of, reload, sample_files
from tests.support import docker as docker_support
from tests.support import engine
from tests.support.registry import RunningRegistry
from workers.debootstrap import BaseSpec, build_base
from workers.pipeline.control import BuildControl
from workers.pipeline.image_build import docker_api
from workers.pipeline.steplog import ConsoleLog

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def debian_base(registry: RunningRegistry) -> Iterator[str]:
    """A minimal debootstrap base (minbase, nothing added), pushed to the test registry."""
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed")
    api = docker_api(None, timeout=600)
    reference = build_base(
        BaseSpec(
            suite="bookworm",
            mirror="http://deb.debian.org/debian",
            variant="minbase",
            packages=(),
            name="cartridge-test/base",
        ),
        api=api,
        registry=registry.host,
        engine_registry=registry.host,
        log=ConsoleLog(io.StringIO()),
        control=BuildControl(api, deadline=time.monotonic() + 1200),
        # Kept between runs on one machine: the next run downloads nothing.
        cache_dir=Path(tempfile.gettempdir()) / "cartridge-test-debootstrap-cache",
    )
    yield reference
    docker_support.remove_images(f"{registry.host}/cartridge-test/base")


def test_a_build_host_without_the_base_pulls_it_by_digest_and_builds_on_it(
    session: Session,
    run_build: Callable[[int], str],
    registry: RunningRegistry,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    make_build: Callable[[Repository, str], Build],
    set_build_env: Callable[..., None],
    debian_base: str,
) -> None:
    assert debian_base.startswith(f"{registry.host}/cartridge-test/base@sha256:")
    config = docker_support.client().api.inspect_image(debian_base)["Config"]
    assert "LANG=C.UTF-8" in config["Env"]

    with engine.second_engine() as empty_host:
        set_build_env(docker_host=empty_host, base_image=debian_base)
        sha = push_commit(sample_repository, sample_files())
        build = make_build(sample_repository, sha)
        assert run_build(build.id) == "succeeded", log_of(session, build)

        log = log_of(session, reload(session, build))
        assert f"base image {debian_base} is not on this host: pulling it from" in log
        assert f"base image pulled: {debian_base}" in log
        # Built on Debian: /bin/sh is dash, and the launcher runs there too.
        host = docker_support.client().__class__(base_url=empty_host)
        image = f"{registry.host}/{sample_repository.image_name}:{sha}"
        output = host.containers.run(
            image,
            ["-c", "readlink -f /bin/sh; cat /etc/debian_version"],
            entrypoint=["/bin/sh"],
            remove=True,
            network_mode="none",
        ).decode()
        assert output.splitlines()[0] == "/usr/bin/dash"
        assert output.splitlines()[1].startswith("12.")
        assert host.containers.run(image, ["report"], remove=True, network_mode="none")
