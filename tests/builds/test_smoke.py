"""Green means it boots: smoke checks start each declared role from the built image."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import httpx
import pytest
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import Build, Repository
from tests.builds.assembly import assemble, write_tree
from tests.builds.helpers import COMPILE, log_of, reload, sample_files
from tests.support import docker as docker_support
from tests.support.registry import RunningRegistry
from workers.pipeline.outcomes import BuildFailed

WEB = "busybox httpd -f -p 8000 -h /app/public"


def build_with_roles(
    tmp_path: Path, base_image: str, roles: dict[str, object]
) -> tuple[str | None, str, str | None]:
    """Builds a checkout with `roles` on network `none`: (image id, log, failure message). Checks
    that no smoke container of the image is left behind, pass or fail."""
    checkout = write_tree(
        tmp_path / "checkout",
        {"container/compile": COMPILE, "container/roles.json": json.dumps(roles)},
    )
    settings = Settings(state_dir=tmp_path / "state", build_network="none")
    out = io.StringIO()
    tag = f"cartridge-test/smoke-{uuid.uuid4().hex[:12]}:latest"
    client = docker_support.client()
    try:
        built, log = assemble(checkout, settings, base_image=base_image, out=out, tag=tag)
    except BuildFailed as failed:
        return None, out.getvalue(), failed.message
    finally:
        # Other tests may run smoke checks at the same time: only this image's containers count.
        assert not client.containers.list(all=True, filters={"ancestor": tag})
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True)
    return built.image_id, log, None


def test_roles_that_answer_pass_and_the_build_goes_on(tmp_path: Path, base_image: str) -> None:
    roles = {
        "web": {
            "command": WEB,
            "smoke": {"http": 8000, "path": "/index.html", "within_seconds": 20},
        },
        "worker": {
            "command": "echo working; exec sleep 1000",
            "smoke": {"exec": "test -s /app/public/index.html && echo ready"},
        },
        "other": "exit 1",  # no check: never started
    }
    image, log, failure = build_with_roles(tmp_path, base_image, roles)
    assert failure is None
    assert image is not None
    assert "==> smoke: web, worker" in log
    assert "web: HTTP GET :8000/index.html passed after " in log
    assert ": HTTP/1.1 200 OK" in log
    assert "worker: `test -s /app/public/index.html && echo ready` passed after " in log
    assert "exit status 0: ready" in log


@pytest.mark.parametrize(
    ("role", "expected", "in_log"),
    [
        (
            # Exits at start: fails at once, well before within_seconds.
            {
                "command": "echo booting; echo 'config/database.yml missing' >&2; exit 3",
                "smoke": {"http": 8000, "within_seconds": 60},
            },
            "the smoke check of role web failed: the role exited with status 3 ",
            "config/database.yml missing",
        ),
        (
            # Runs but never listens.
            {
                "command": "echo 'waiting for nothing'; exec sleep 1000",
                "smoke": {"http": 8000, "within_seconds": 1.5},
            },
            "the smoke check of role web failed: not passed within 1.5s; last try: no answer on "
            "port 8000: Connection refused",
            "waiting for nothing",
        ),
        (
            # Answers, but not with success.
            {"command": WEB, "smoke": {"http": 8000, "path": "/nope", "within_seconds": 1}},
            "the smoke check of role web failed: not passed within 1s; last try: "
            "HTTP/1.1 404 Not Found",
            "web: HTTP GET :8000/nope: not passed",
        ),
        (
            # Its check command fails.
            {
                "command": "echo up; exec sleep 1000",
                "smoke": {"exec": "echo 'redis unreachable' >&2; exit 4", "within_seconds": 1},
            },
            "the smoke check of role web failed: not passed within 1s; last try: exit status 4: "
            "redis unreachable",
            "web: last output of the role:\nup\n",
        ),
    ],
)
def test_a_role_that_does_not_boot_fails_the_build_clearly(
    tmp_path: Path, base_image: str, role: dict[str, object], expected: str, in_log: str
) -> None:
    _, log, failure = build_with_roles(tmp_path, base_image, {"web": role})
    assert failure is not None
    assert failure.startswith(expected), failure
    # The role's last output and the check's result, for whoever reads the build log.
    assert in_log in log
    assert failure.removeprefix("the smoke check of role web failed: ") in log


@pytest.mark.parametrize(
    ("role", "in_log"),
    [
        (
            {
                "command": "echo booting; echo 'config/database.yml missing' >&2; exit 3",
                "smoke": {"http": 8000},
            },
            "config/database.yml missing",
        ),
        (
            {
                "command": "echo up; exec sleep 1000",
                "smoke": {"exec": "exit 4", "within_seconds": 1},
            },
            "web: last output of the role:\nup\n",
        ),
    ],
)
def test_a_failing_smoke_check_fails_the_build_before_the_push_with_the_output_in_the_log(
    session: Session,
    run_build: Callable[[int], str],
    registry: RunningRegistry,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    make_build: Callable[[Repository, str], Build],
    role: dict[str, object],
    in_log: str,
) -> None:
    roles = {"web": role}
    sha = push_commit(sample_repository, sample_files({"container/roles.json": json.dumps(roles)}))
    build = make_build(sample_repository, sha)

    assert run_build(build.id) == "failed"

    build = reload(session, build)
    assert build.error is not None
    assert build.error.startswith("the smoke check of role web failed: ")
    log = log_of(session, build)
    assert in_log in log
    assert f"==> failed: {build.error}" in log
    assert "==> push" not in log
    manifest = httpx.get(f"{registry.url}/v2/{sample_repository.image_name}/manifests/{sha}")
    assert manifest.status_code == 404
