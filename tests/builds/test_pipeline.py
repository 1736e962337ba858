"""The build task run in this process against the real git server, Docker engine and registry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Build, Image, Repository
from tests.builds.conftest import GIT_TOKEN
from tests.builds.helpers import ROLES, log_of, reload, sample_files
from tests.support import docker as docker_support
from tests.support.git_server import GitServer
from tests.support.registry import RunningRegistry
from tests.support.server import free_port
from workers.pipeline.buildlog import BuildLog
from workers.pipeline.context import build_context
from workers.pipeline.control import BuildControl
from workers.pipeline.conventions import Conventions
from workers.pipeline.image_build import build_image, docker_api
from workers.pipeline.launcher import find_launcher
from workers.pipeline.limits import BuildLimits
from workers.pipeline.outcomes import BuildErrored
from workers.pipeline.publish import DOCKER_MANIFEST, MANIFEST_ACCEPT

PushCommit = Callable[..., str]
MakeBuild = Callable[[Repository, str], Build]
RunBuild = Callable[[int], str]


def test_a_build_produces_a_verified_image_in_the_registry(
    session: Session,
    run_build: RunBuild,
    build_env: dict[str, str],
    registry: RunningRegistry,
    git_server: GitServer,
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    sha = push_commit(sample_repository, sample_files())
    build = make_build(sample_repository, sha)

    assert run_build(build.id) == "succeeded"

    build = reload(session, build)
    assert (build.status, build.error, build.build_host) == (
        "succeeded",
        None,
        build_env["CARTRIDGE_HOST_NAME"],
    )
    assert build.started_at is not None
    assert build.finished_at is not None
    image = session.scalars(select(Image).where(Image.build_id == build.id)).one()
    manifest = httpx.get(
        f"{registry.url}/v2/{sample_repository.image_name}/manifests/{sha}",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    assert manifest.headers["Docker-Content-Digest"] == image.manifest_digest
    document = manifest.json()
    assert image.config_digest == document["config"]["digest"]
    assert [layer["digest"] for layer in image.layers] == [
        layer["digest"] for layer in document["layers"]
    ]
    assert image.media_type == DOCKER_MANIFEST
    assert image.size == document["config"]["size"] + sum(
        layer["size"] for layer in document["layers"]
    )
    assert (image.name, image.tag) == (sample_repository.image_name, sha)
    assert image.roles == ROLES
    assert image.labels["org.opencontainers.image.revision"] == sha
    assert image.labels["org.opencontainers.image.source"] == sample_repository.clone_url
    assert image.labels["org.opencontainers.image.created"].endswith("Z")
    assert json.loads(image.labels["dev.cartridge.roles"]) == image.roles

    reference = f"{registry.host}/{sample_repository.image_name}@{image.manifest_digest}"
    output = docker_support.run_once(
        reference, ["sh", "-c", "cat /app/REVISION /etc/sample.conf; ls -a /app"]
    )
    revision, config, *listing = output.split()
    assert (revision, config) == (sha, "greeting=hello")
    assert ".git" not in listing
    assert "README.md" in listing
    assert "public" in listing

    log = log_of(session, build)
    for line in ("==> fetch: ", "==> validate", "==> build: ", "==> push: ", f"compiling {sha}"):
        assert line in log
    assert "==> succeeded in " in log
    # The token authenticated the fetch but appears nowhere in the log.
    assert GIT_TOKEN not in log
    assert any(header.startswith("Basic ") for header in git_server.seen_authorization)
    assert not list(get_settings().workspace_dir.glob(f"build-{build.id}-*"))


def test_a_duplicate_or_late_task_does_nothing(
    session: Session,
    run_build: RunBuild,
    build_env: dict[str, str],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    sha = push_commit(sample_repository, sample_files())
    build = make_build(sample_repository, sha)
    assert run_build(build.id) == "succeeded"
    finished_at = reload(session, build).finished_at

    assert run_build(build.id) == "skipped"
    assert run_build(10_000_000) == "skipped"
    build = reload(session, build)
    assert (build.status, build.attempt, build.finished_at) == ("succeeded", 1, finished_at)
    assert session.scalars(select(Image).where(Image.build_id == build.id)).all() != []


def test_a_compile_that_exits_non_zero_fails_the_build_with_its_output(
    session: Session,
    run_build: RunBuild,
    build_env: dict[str, str],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    compile_script = "#!/bin/sh\necho 'bundle install: no such gem rails-9'\nexit 3\n"
    sha = push_commit(sample_repository, sample_files({"container/compile": compile_script}))
    build = make_build(sample_repository, sha)

    assert run_build(build.id) == "failed"

    build = reload(session, build)
    assert build.status == "failed"
    assert build.error == "container/compile exited with status 3 (see the log)"
    log = log_of(session, build)
    assert "bundle install: no such gem rails-9" in log
    assert "==> failed: container/compile exited with status 3" in log
    assert session.scalars(select(Image).where(Image.build_id == build.id)).all() == []


def test_invalid_roles_json_fails_the_build_before_any_image_build(
    session: Session,
    run_build: RunBuild,
    build_env: dict[str, str],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    roles = "{'web': 'bin/server',}\n"
    sha = push_commit(sample_repository, sample_files({"container/roles.json": roles}))
    build = make_build(sample_repository, sha)

    assert run_build(build.id) == "failed"

    build = reload(session, build)
    assert build.status == "failed"
    assert build.error is not None
    assert build.error.startswith("container/roles.json is not valid JSON")
    assert "strict JSON" in build.error
    log = log_of(session, build)
    assert build.error in log
    assert "==> build: " not in log


def test_a_sha_missing_from_the_repository_fails_the_build(
    session: Session,
    run_build: RunBuild,
    build_env: dict[str, str],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    push_commit(sample_repository, sample_files())
    missing = "0123456789abcdef0123456789abcdef01234567"
    build = make_build(sample_repository, missing)

    assert run_build(build.id) == "failed"

    build = reload(session, build)
    assert build.status == "failed"
    assert build.error == (
        f"commit {missing} is not in {sample_repository.clone_url}: it was never pushed there "
        "or a force-push removed it"
    )


def test_a_refused_git_token_errors_the_build_without_showing_the_token(
    session: Session,
    run_build: RunBuild,
    set_build_env: Callable[..., None],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    sha = push_commit(sample_repository, sample_files())
    build = make_build(sample_repository, sha)
    set_build_env(git_token="ghs_wrong-token-value")

    assert run_build(build.id) == "errored"

    build = reload(session, build)
    assert build.status == "errored"
    assert build.error is not None
    assert "refused the build host's credentials" in build.error
    assert "ghs_wrong-token-value" not in log_of(session, build)


def test_a_registry_that_is_down_errors_the_build(
    session: Session,
    run_build: RunBuild,
    set_build_env: Callable[..., None],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    sha = push_commit(sample_repository, sample_files())
    build = make_build(sample_repository, sha)
    set_build_env(registry_url=f"127.0.0.1:{free_port()}")

    assert run_build(build.id) == "errored"

    build = reload(session, build)
    assert build.status == "errored"
    assert build.error is not None
    assert build.error.startswith("push to 127.0.0.1:")
    assert session.scalars(select(Image).where(Image.build_id == build.id)).all() == []


def test_an_unreachable_docker_engine_errors_the_build(
    session: Session,
    run_build: RunBuild,
    set_build_env: Callable[..., None],
    tmp_path,  # type: ignore[no-untyped-def]
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    sha = push_commit(sample_repository, sample_files())
    build = make_build(sample_repository, sha)
    set_build_env(docker_host=f"unix://{tmp_path}/no-docker.sock")

    assert run_build(build.id) == "errored"

    build = reload(session, build)
    assert build.error is not None
    assert "Docker engine at unix://" in build.error


def test_a_missing_base_image_errors_the_build_and_is_never_pulled(
    session: Session,
    run_build: RunBuild,
    build_env: dict[str, str],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    sample_repository.base_image = "cartridge/no-such-base:1"
    session.commit()
    sha = push_commit(sample_repository, sample_files())
    build = make_build(sample_repository, sha)

    assert run_build(build.id) == "errored"

    build = reload(session, build)
    assert build.error is not None
    assert build.error.startswith("the base image cartridge/no-such-base:1 is not on build host")


def test_a_build_past_its_time_limit_errors_and_its_container_is_killed(
    session: Session,
    run_build: RunBuild,
    set_build_env: Callable[..., None],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    compile_script = "#!/bin/sh\necho started\nsleep 60\n"
    sha = push_commit(sample_repository, sample_files({"container/compile": compile_script}))
    build = make_build(sample_repository, sha)
    set_build_env(build_timeout_seconds="3")

    assert run_build(build.id) == "errored"

    build = reload(session, build)
    assert build.error == "build exceeded its time limit of 3s"
    log = log_of(session, build)
    assert "started" in log
    compile_container = log.split(" ---> Running in ")[-1].split()[0]
    assert not docker_support.container_running(compile_container)


def test_an_application_change_reuses_the_dependency_layer_and_a_manifest_change_does_not(
    session: Session,
    run_build: RunBuild,
    build_env: dict[str, str],
    registry: RunningRegistry,
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
) -> None:
    install = (
        "#!/bin/sh\nset -e\nmkdir -p vendor\n"
        "cat /proc/sys/kernel/random/uuid > vendor/installed\necho installing dependencies\n"
    )
    lockfile = f"rails ({uuid.uuid4().hex})\n"
    first = push_commit(
        sample_repository,
        sample_files({"container/dependencies": install, "Gemfile.lock": lockfile}),
    )
    application_change = push_commit(sample_repository, {"app.rb": "puts 'changed'\n"})
    dependency_change = push_commit(sample_repository, {"Gemfile.lock": lockfile + "rack\n"})

    installed: list[str] = []
    for sha in (first, application_change, dependency_change):
        build = make_build(sample_repository, sha)
        assert run_build(build.id) == "succeeded"
        reference = f"{registry.host}/{sample_repository.image_name}:{sha}"
        installed.append(docker_support.run_once(reference, ["cat", "/app/vendor/installed"]))
        if sha == application_change:
            log = log_of(session, build)
            assert 'RUN ["/app/container/dependencies"]\n ---> Using cache' in log
            assert "installing dependencies" not in log

    assert installed[0] == installed[1]
    assert installed[2] != installed[1]


def test_a_checkout_that_cannot_be_read_errors_instead_of_building_a_partial_context(
    tmp_path: Path, base_image: str, database_url: str
) -> None:
    conventions = Conventions(roles={}, has_files=False, has_dependencies=False)
    context = build_context(
        tmp_path / "vanished",
        "f" * 40,
        conventions,
        base_image=base_image,
        labels={},
        launcher=find_launcher(get_settings().tini_path, tmp_path / "launcher"),
    )
    api = docker_api(None)
    log = BuildLog(1, 1, flush_seconds=3600, flush_bytes=1 << 30)
    with pytest.raises(BuildErrored, match="could not send the checkout to the engine"):
        build_image(
            api,
            context,
            tag=f"cartridge-test/vanished:{uuid.uuid4().hex}",
            network="none",
            limits=BuildLimits.resolve(get_settings(), None),
            log=log,
            control=BuildControl(api, deadline=float("inf")),
        )
