"""`cartridge build` and `cartridge run`: a working tree built exactly as a build host builds it."""

from __future__ import annotations

import io
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from app.cli.main import cli
from app.config import get_settings
from app.models import Build, Repository
from tests.builds.helpers import log_of, sample_files
from tests.support import docker as docker_support
from tests.support.git_server import GitServer
from tests.support.registry import RunningRegistry
from workers.pipeline.image_build import docker_api
from workers.pipeline.local import (
    build_working_tree,
    container_name,
    create_role_container,
)
from workers.pipeline.steplog import ConsoleLog

CREATED = "org.opencontainers.image.created"
_STEP = re.compile(r"^Step \d+/\d+ : (.*)$", re.MULTILINE)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def clone(git_server: GitServer, repository: Repository, destination: Path) -> Path:
    """A developer's clone: from the bare repository, with origin set to the clone URL."""
    git(
        destination.parent,
        "clone",
        "-q",
        str(git_server.root / f"{repository.full_name}.git"),
        str(destination),
    )
    git(destination, "remote", "set-url", "origin", repository.clone_url)
    return destination


def dockerfile_steps(log: str) -> list[str]:
    """The Dockerfile's instructions as the engine echoed them, the creation time blanked."""
    return [re.sub(rf'"{CREATED}"="[^"]*"', f'"{CREATED}"=""', step) for step in _STEP.findall(log)]


def comparable_config(image: str) -> dict[str, Any]:
    """The image config without what differs from one build to the next by nature: the
    creation time and the ids of the intermediate containers and images."""
    config = dict(docker_support.client().api.inspect_image(image)["Config"])
    for key in ("Image", "Hostname"):
        config.pop(key, None)
    config["Labels"] = {k: v for k, v in (config.get("Labels") or {}).items() if k != CREATED}
    return config


@pytest.fixture
def local_images() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for image in made:
        docker_support.client().api.remove_image(image, force=True)


def test_the_same_commit_builds_the_same_dockerfile_and_config_both_ways(
    session: Session,
    run_build: Callable[[int], str],
    registry: RunningRegistry,
    git_server: GitServer,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    make_build: Callable[[Repository, str], Build],
    tmp_path: Path,
    local_images: list[str],
) -> None:
    sha = push_commit(sample_repository, sample_files())
    build = make_build(sample_repository, sha)
    assert run_build(build.id) == "succeeded"
    host_image = f"{registry.host}/{sample_repository.image_name}:{sha}"

    tree = clone(git_server, sample_repository, tmp_path / "laptop")
    out = io.StringIO()
    built_tree, built = build_working_tree(tree, get_settings(), log=ConsoleLog(out))
    local_images.append(built_tree.tag)

    assert (built_tree.sha, built_tree.dirty) == (sha, False)
    assert built_tree.tag == f"cartridge-local/{sample_repository.image_name}:{sha}"
    host_steps = dockerfile_steps(log_of(session, build))
    assert len(host_steps) > 8
    assert dockerfile_steps(out.getvalue()) == host_steps
    assert comparable_config(built.image_id) == comparable_config(host_image)
    config = comparable_config(built.image_id)
    assert config["Labels"]["org.opencontainers.image.source"] == sample_repository.clone_url
    assert config["Labels"]["dev.cartridge.repository"] == sample_repository.full_name
    listing = ["sh", "-c", "cat /app/REVISION; ls -a /app /cartridge"]
    assert docker_support.run_once(built.image_id, listing) == docker_support.run_once(
        host_image, listing
    )


def test_a_tree_with_changes_builds_as_dirty_without_ignored_files(
    git_server: GitServer,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    build_env: dict[str, str],
    tmp_path: Path,
    local_images: list[str],
) -> None:
    sha = push_commit(sample_repository, sample_files({".gitignore": ".env\nnode_modules/\n"}))
    tree = clone(git_server, sample_repository, tmp_path / "laptop")
    (tree / "README.md").write_text("Changed, not committed.\n")
    (tree / "notes.txt").write_text("untracked, not ignored\n")
    (tree / ".env").write_text("SECRET=1\n")
    (tree / "node_modules").mkdir()
    (tree / "node_modules" / "left-pad.js").write_text("//\n")

    built_tree, built = build_working_tree(tree, get_settings(), log=ConsoleLog(io.StringIO()))
    local_images.append(built_tree.tag)

    assert built_tree.revision == f"{sha}-dirty"
    tag = built_tree.tag.rpartition(":")[2]
    assert tag == f"{sha}-dirty"
    assert not re.fullmatch(r"[0-9a-f]{40}", tag)
    labels = docker_support.client().api.inspect_image(built.image_id)["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == f"{sha}-dirty"
    output = docker_support.run_once(
        built.image_id, ["sh", "-c", "cat /app/REVISION /app/README.md; ls -a /app"]
    )
    revision, *rest = output.splitlines()
    assert revision == f"{sha}-dirty"
    assert rest[0] == "Changed, not committed."
    assert "notes.txt" in output
    assert ".env" not in output
    assert "node_modules" not in output


def test_cartridge_run_names_containers_role_n_with_the_fqdn(
    tmp_path: Path, base_image: str, build_env: dict[str, str], local_images: list[str]
) -> None:
    tree = tmp_path / "app"
    tree.mkdir()
    for relative, content in sample_files().items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text(content)
    (tree / "container/compile").chmod(0o755)
    git(tree, "init", "-q", "-b", "main")
    git(tree, "add", "-A")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x")

    result = CliRunner().invoke(cli, ["build", str(tree)])
    assert result.exit_code == 0, result.output
    tag = f"cartridge-local/local-app:{git(tree, 'rev-parse', 'HEAD')}"
    local_images.append(tag)
    assert result.output.splitlines()[-1].startswith(f"==> built {tag} ")

    api = docker_api(None)
    settings = get_settings()
    names = []
    try:
        for role in ("web", "web", ".shell"):
            names.append(
                create_role_container(
                    settings,
                    tag,
                    role,
                    [],
                    publish=["8000"],
                    environment=["GREETING=hi"],
                    interactive=False,
                )
            )
        assert names == ["web-1", "web-2", "shell-1"]
        assert container_name(api, "web") == ("web-3", 3)
        config = api.inspect_container("web-2")["Config"]
        assert config["Hostname"] == f"web-2.{socket.getfqdn()}"
        assert config["Cmd"] == ["web"]
        assert "GREETING=hi" in config["Env"]
    finally:
        for name in names:
            api.remove_container(name, force=True)


def test_cartridge_build_fails_clearly_outside_a_repository_or_without_conventions(
    tmp_path: Path, build_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["build", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not in a git working tree" in result.output
    assert "(build_failed)" in result.output

    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "README").write_text("x\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x")
    result = runner.invoke(cli, ["build", str(tmp_path)])
    assert result.exit_code == 1
    assert "==> failed: container/compile is missing" in result.output
    assert "error: container/compile is missing" in result.output

    # An engine that does not answer: exit status 3, as for an unreachable API.
    monkeypatch.setenv("CARTRIDGE_DOCKER_HOST", "unix:///nonexistent.sock")
    get_settings.cache_clear()
    result = runner.invoke(cli, ["build", str(tmp_path)])
    get_settings.cache_clear()
    assert result.exit_code == 3
    assert "(docker_unreachable)" in result.output
