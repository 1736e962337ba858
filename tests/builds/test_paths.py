"""Nothing outside the checkout is read while a build is prepared: every path Cartridge reads that
resolves outside it (through an absolute or a relative symlink) fails the build, naming the path."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from app.config import get_settings
from workers.pipeline.context import build_context
from workers.pipeline.conventions import Conventions, check_repository
from workers.pipeline.launcher import Launcher, find_launcher
from workers.pipeline.outcomes import BuildFailed
from workers.pipeline.paths import inside_checkout
from workers.pipeline.workspace import sweep_stale, workspace

SHA = "c" * 40
ROLES = '{"web": "bin/server"}\n'
HOST_SECRET = "host-secret-do-not-copy\n"


def write(path: Path, content: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)


def complete_repository(root: Path) -> None:
    """A repository that passes every check and uses every path Cartridge reads."""
    write(root / "container/compile", "#!/bin/sh\n", 0o755)
    write(root / "container/dependencies", "#!/bin/sh\n", 0o755)
    write(root / "container/roles.json", ROLES)
    write(root / "container/files/etc/app.conf", "x=1\n")
    write(root / "Gemfile.lock", "rails (7.1)\n")
    write(root / "app.rb", "puts 1\n")


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """This build's checkout, another build's checkout beside it, and host files. The outside
    copies are valid convention files, so only the path check can refuse them."""
    workspaces = tmp_path / "workspaces"
    checkout = workspaces / "build-7-1" / "checkout"
    other = workspaces / "build-6-1" / "checkout"
    host = tmp_path / "host"
    for root in (checkout, other, host):
        complete_repository(root)
    write(host / "container/files/etc/shadow", HOST_SECRET)
    write(host / "Gemfile.lock", HOST_SECRET)
    return {"checkout": checkout, "other": other, "host": host}


def link(checkout: Path, relative: str, target: str | Path) -> None:
    path = checkout / relative
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    os.symlink(target, path)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Launcher:
    return find_launcher(get_settings().tini_path, tmp_path_factory.mktemp("launcher"))


def prepare(checkout: Path, launcher: Launcher) -> None:
    """What the pipeline reads before the engine sees anything: the conventions, then the
    context (its Dockerfile and every entry), written to memory."""
    conventions = check_repository(checkout)
    context = build_context(
        checkout, SHA, conventions, base_image="base", labels={}, launcher=launcher
    )
    context.write(io.BytesIO())


# path -> the same path in the other build's checkout, relative to the link's directory
PATHS = {
    "container": "../../build-6-1/checkout/container",
    "container/files": "../../../build-6-1/checkout/container/files",
    "container/compile": "../../../build-6-1/checkout/container/compile",
    "container/dependencies": "../../../build-6-1/checkout/container/dependencies",
    "container/roles.json": "../../../build-6-1/checkout/container/roles.json",
    "Gemfile.lock": "../../build-6-1/checkout/Gemfile.lock",
}


@pytest.mark.parametrize("relative", PATHS)
def test_an_absolute_link_out_of_the_checkout_fails_naming_the_path(
    launcher: Launcher, layout: dict[str, Path], relative: str
) -> None:
    target = layout["host"] / relative
    link(layout["checkout"], relative, target)

    with pytest.raises(BuildFailed) as raised:
        prepare(layout["checkout"], launcher)

    message = raised.value.message
    assert message.startswith(f"{relative} is a symlink to {str(target)!r}, outside the checkout")
    assert "Cartridge reads nothing outside the repository" in message


@pytest.mark.parametrize("relative", PATHS)
def test_a_relative_link_into_another_build_fails_naming_the_path(
    launcher: Launcher, layout: dict[str, Path], relative: str
) -> None:
    link(layout["checkout"], relative, PATHS[relative])
    assert (layout["checkout"] / relative).exists()  # the link works: only the check refuses it

    with pytest.raises(BuildFailed) as raised:
        prepare(layout["checkout"], launcher)

    assert raised.value.message.startswith(
        f"{relative} is a symlink to {PATHS[relative]!r}, outside the checkout"
    )


@pytest.mark.parametrize(
    "relative",
    ["container/compile", "container/dependencies", "container/roles.json", "container/files"],
)
@pytest.mark.parametrize("absolute", [True, False])
def test_a_path_below_a_linked_container_directory_names_the_link(
    layout: dict[str, Path], relative: str, absolute: bool
) -> None:
    target = str(layout["host"] / "container") if absolute else PATHS["container"]
    link(layout["checkout"], "container", target)

    with pytest.raises(BuildFailed) as raised:
        check_repository(layout["checkout"])
    # `container` is checked first; each path below it names the same link.
    assert raised.value.message.startswith(f"container is a symlink to {target!r}")

    with pytest.raises(BuildFailed) as below:
        inside_checkout(layout["checkout"], relative)
    assert below.value.message.startswith(
        f"{relative} leads through the symlink container -> {target!r}, outside the checkout"
    )


@pytest.mark.parametrize("absolute", [True, False])
def test_a_context_tree_outside_the_checkout_is_never_written(
    launcher: Launcher, layout: dict[str, Path], absolute: bool
) -> None:
    """The context writer checks the trees it walks itself, even when handed conventions that
    were not checked."""
    checkout = layout["checkout"]
    target = layout["host"] / "container" if absolute else Path(PATHS["container"])
    link(checkout, "container", target)
    conventions = Conventions(roles={}, has_files=True, has_dependencies=False)
    context = build_context(
        checkout, SHA, conventions, base_image="base", labels={}, launcher=launcher
    )
    out = io.BytesIO()

    with pytest.raises(BuildFailed, match=r"^container/files leads through the symlink container"):
        context.write(out)
    assert HOST_SECRET.encode() not in out.getvalue()


def test_links_within_the_checkout_are_followed_and_links_in_files_stay_links(
    launcher: Launcher,
    layout: dict[str, Path],
) -> None:
    checkout = layout["checkout"]
    (checkout / "build").mkdir()
    (checkout / "container").rename(checkout / "build" / "container")
    os.symlink("build/container", checkout / "container")
    write(checkout / "locks/Gemfile.lock", "rails (7.2)\n")
    link(checkout, "Gemfile.lock", "locks/Gemfile.lock")
    os.symlink("/etc/shadow", checkout / "build/container/files/etc/shadow")
    conventions = check_repository(checkout)
    context = build_context(
        checkout, SHA, conventions, base_image="base", labels={}, launcher=launcher
    )
    out = io.BytesIO()
    context.write(out)

    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {member.name: member for member in tar.getmembers()}
        manifest = tar.extractfile("dependencies/Gemfile.lock")
        assert manifest is not None
        assert manifest.read() == b"rails (7.2)\n"
    assert members["files/etc/app.conf"].isfile()
    # Copied as a link, never read: in the image it points at the image's own /etc/shadow.
    assert members["files/etc/shadow"].issym()
    assert members["files/etc/shadow"].linkname == "/etc/shadow"
    assert members["repository/container"].issym()
    assert members["repository/Gemfile.lock"].issym()
    assert HOST_SECRET.encode() not in out.getvalue()


def test_a_manifest_linked_to_a_directory_is_refused(
    launcher: Launcher, layout: dict[str, Path]
) -> None:
    checkout = layout["checkout"]
    (checkout / "vendor").mkdir()
    link(checkout, "Gemfile.lock", "vendor")
    with pytest.raises(BuildFailed, match=r"^Gemfile\.lock is a dependency manifest, so it must"):
        prepare(checkout, launcher)


def test_workspaces_are_not_guessable_from_the_build_id(tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    with workspace(root, 12, 1) as first, workspace(root, 12, 1) as second:
        assert first != second
        assert first.parent == root
        prefix, random = first.name[: len("build-12-1-")], first.name[len("build-12-1-") :]
        assert prefix == "build-12-1-"
        assert len(random) == 32
        int(random, 16)
        first.mkdir()
        second.mkdir()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert not first.exists()
    assert not second.exists()

    stale = root / "build-12-1-0123456789abcdef0123456789abcdef"
    live = root / "build-13-1-fedcba9876543210fedcba9876543210"
    older = root / "build-14-2"
    for path in (stale, live, older):
        path.mkdir()
    removed = sweep_stale(root, lambda build_id, _attempt: build_id == 13)
    assert sorted(removed) == sorted([stale, older])
    assert live.exists()
