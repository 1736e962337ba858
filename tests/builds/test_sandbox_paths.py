"""A pushed repository whose symlinks lead out of the checkout fails its build before anything
reaches the Docker engine, with the path named in the build's error and log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Build, Image, Repository
from tests.builds.helpers import log_of, reload, sample_files
from tests.support.git_server import GitServer

PushCommit = Callable[..., str]
MakeBuild = Callable[[Repository, str], Build]
RunBuild = Callable[[int], str]


@pytest.fixture
def host_container(tmp_path: Path) -> Path:
    """A valid `container/` directory on the build host, outside any checkout."""
    root = tmp_path / "host-container"
    (root / "files/etc").mkdir(parents=True)
    (root / "files/etc/host-only.conf").write_text("host secret\n")
    (root / "compile").write_text("#!/bin/sh\necho compiled from the host\n")
    (root / "compile").chmod(0o755)
    (root / "roles.json").write_text('{"web": "true"}\n')
    return root


@pytest.mark.parametrize(
    ("relative", "target"),
    [
        ("container", "{host}"),
        ("container", "../../../../../../../../../../..{host}"),
        ("container/files", "{host}/files"),
        ("container/roles.json", "../../../../../../../../../../../..{host}/roles.json"),
    ],
)
def test_a_pushed_link_out_of_the_checkout_fails_the_build_naming_the_path(
    session: Session,
    run_build: RunBuild,
    build_env: dict[str, str],
    git_server: GitServer,
    sample_repository: Repository,
    make_build: MakeBuild,
    host_container: Path,
    relative: str,
    target: str,
) -> None:
    files = sample_files()
    for path in list(files):
        if path == relative or path.startswith(f"{relative}/"):
            del files[path]
    link = target.format(host=host_container)
    sha = git_server.commit(
        sample_repository.full_name,
        dict(files),
        executable=("container/compile",),
        symlinks={relative: link},
    )
    build = make_build(sample_repository, sha)

    assert run_build(build.id) == "failed"

    build = reload(session, build)
    assert build.error is not None
    assert build.error.startswith(f"{relative} is a symlink to {link!r}, outside the checkout")
    log = log_of(session, build)
    assert build.error in log
    assert "==> build: " not in log
    assert "compiled from the host" not in log
    assert session.scalars(select(Image).where(Image.build_id == build.id)).all() == []
