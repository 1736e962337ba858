"""The generated Dockerfile and build context."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from workers.pipeline.context import build_context, dockerfile, image_labels
from workers.pipeline.conventions import Conventions
from workers.pipeline.launcher import find_launcher
from workers.pipeline.outcomes import BuildErrored
from workers.pipeline.roles import Role

SHA = "a" * 40
PLAIN = Conventions(roles={}, has_files=False, has_dependencies=False)
FULL = Conventions(roles={}, has_files=True, has_dependencies=True)


def test_dependencies_are_installed_in_their_own_layer_before_the_repository_is_copied() -> None:
    text = dockerfile("cartridge/base:latest", FULL, {})
    assert text.splitlines() == [
        "FROM cartridge/base:latest",
        "WORKDIR /app",
        "COPY cartridge-launcher/ /cartridge/",
        'RUN ["/bin/sh", "-c", "exit 0"]',
        'ENTRYPOINT ["/cartridge/tini", "--", "/cartridge/launch"]',
        "CMD []",
        "COPY files/ /",
        "COPY dependencies/ /app/",
        'RUN ["/app/container/dependencies"]',
        "COPY repository/ /app/",
        'RUN ["/app/container/compile"]',
        "COPY cartridge-roles/ /cartridge/",
    ]
    plain = dockerfile("cartridge/base:latest", PLAIN, {}).splitlines()
    assert not any("dependencies" in line or "files/" in line for line in plain)


def test_labels_are_one_instruction_that_reads_back_exactly() -> None:
    labels = image_labels(
        sha=SHA,
        source="https://github.com/octo/app.git",
        created="2026-11-27T05:00:00Z",
        repository="octo/app",
        roles={
            "web": Role('sh -c "echo $HOME \\ ok"'),
            "resque": Role("rake resque:work", stop_signal="QUIT"),
        },
    )
    last = dockerfile("base", PLAIN, labels).splitlines()[-1]
    assert last.startswith('LABEL "org.opencontainers.image.revision"="' + SHA + '"')
    assert r"\"web\":\"sh -c \\\"echo \$HOME \\\\ ok\\\"\"" in last
    # roles.json as written: the string form where it says everything, objects elsewhere.
    assert json.loads(labels["dev.cartridge.roles"]) == {
        "web": 'sh -c "echo $HOME \\ ok"',
        "resque": {"command": "rake resque:work", "stop_signal": "QUIT"},
    }


@pytest.mark.parametrize("base", ["base\nRUN rm -rf /", "base image", ""])
def test_a_base_image_that_is_not_a_reference_is_refused(base: str) -> None:
    with pytest.raises(BuildErrored, match="is not a valid image reference"):
        dockerfile(base, PLAIN, {})


def test_the_context_holds_the_repository_without_git(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    for relative in (
        ".git/config",
        "app.py",
        "lib/util.py",
        "Gemfile.lock",
        "container/dependencies",
        "container/files/etc/x.conf",
        "REVISION",
    ):
        (checkout / relative).parent.mkdir(parents=True, exist_ok=True)
        (checkout / relative).write_text(relative)
    os.symlink("lib", checkout / "lib-link")
    roles = {"web": Role("bin/server 'it''s'"), ".shell": Role("sh", stop_signal="HUP")}
    context = build_context(
        checkout,
        SHA,
        Conventions(roles=roles, has_files=True, has_dependencies=True),
        base_image="base",
        labels={},
        launcher=find_launcher(Path("/usr/bin/tini-static"), tmp_path / "launcher"),
    )
    with (tmp_path / "context.tar").open("wb") as out:
        context.write(out)
    with tarfile.open(tmp_path / "context.tar") as tar:
        members = {member.name: member for member in tar.getmembers()}
        # The repository's own REVISION file gives way to Cartridge's.
        revision = [m for m in tar.getmembers() if m.name == "repository/REVISION"]
        assert len(revision) == 1
        assert tar.extractfile(revision[0]).read() == f"{SHA}\n".encode()  # type: ignore[union-attr]
        assert tar.extractfile("Dockerfile").read().decode() == context.dockerfile  # type: ignore[union-attr]
        web = tar.extractfile("cartridge-roles/roles/web").read().decode()  # type: ignore[union-attr]
        shell = tar.extractfile("cartridge-roles/roles/.shell").read().decode()  # type: ignore[union-attr]
    names = set(members)
    assert {"repository/app.py", "repository/lib/util.py", "files/etc/x.conf"} <= names
    assert not any(".git" in name for name in names)
    assert members["repository/lib-link"].issym()
    assert sorted(name for name in names if name.startswith("dependencies/")) == [
        "dependencies/Gemfile.lock",
        "dependencies/container/dependencies",
    ]
    assert {(member.uid, member.gid) for member in members.values()} == {(0, 0)}
    assert {"cartridge-launcher/tini", "cartridge-launcher/shim", "cartridge-launcher/launch"} <= {
        name for name in names if members[name].mode == 0o755
    }
    # Shell-quoted for the launcher to source; a simple command gets `exec` (see exec_line).
    sourced = subprocess.run(
        ["sh", "-c", '. /dev/stdin; printf %s "$command"'],
        input=web,
        text=True,
        check=True,
        capture_output=True,
    )
    assert sourced.stdout == "exec bin/server 'it''s'"
    assert shell == "command='exec sh'\nstop_signal=HUP\n"
