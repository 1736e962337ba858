"""A layer cache every build host shares: a second Docker engine, started by the test, reuses the
dependency layer of an image another engine built and pushed."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from sqlalchemy.orm import Session

from app.models import Build, Push, Repository
from tests.builds.helpers import log_of, sample_files
from tests.support.registry import RunningRegistry

pytestmark = pytest.mark.e2e

DEPENDENCIES = "#!/bin/sh\nset -e\necho installing dependencies\nmkdir -p vendor\ndate > vendor/x\n"
_DEPENDENCY_STEP = re.compile(
    r'^Step \d+/\d+ : RUN \["/app/container/dependencies"\]\n(?P<next>.*)$', re.MULTILINE
)


@pytest.fixture(scope="module")
def second_engine(base_image: str) -> Iterator[str]:
    """A second dockerd on its own socket, data root and bridge, with no iptables rules, holding
    only the base image (loaded, as an operator would).

    Its bridge is one of its own: `--bridge none` would make dockerd delete the host's docker0,
    under the engine every other test uses."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed")
    bridge = f"cbr-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    # A short path: the socket's must fit in sockaddr_un.
    root = Path(tempfile.mkdtemp(prefix="cartridge-engine-", dir="/tmp"))
    socket = root / "docker.sock"
    url = f"unix://{socket}"
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "docker.pid"),
            "--host", url,
            "--bridge", bridge,
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--storage-driver", "vfs",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = docker.DockerClient(base_url=url, timeout=120)
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((root / "dockerd.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        saved = docker.from_env(timeout=120).api.get_image(base_image)
        client.api.load_image(b"".join(saved))
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        subprocess.run(["umount", "-R", str(root / "exec")], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            shutil.rmtree(root)


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
