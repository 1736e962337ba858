"""`cartridge build` and `cartridge run`: the build of a developer's working tree, through the same
steps as a build host (workers.pipeline.assemble), with no API, database or broker.

The tree is staged as a build host would check it out: the files git would commit (tracked ones
and untracked ones that are not ignored, so `.env` or `node_modules/` in `.gitignore` stay out),
with git's file modes. A tree with changes builds as revision `<sha>-dirty`; local images are
named `cartridge-local/<image name>:<revision>`, so none is ever mistaken for an image a build
host tagged `<registry>/<image name>:<sha>`.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import docker
import requests

from app.config import Settings
from app.repos.schemas import default_image_name
from workers.pipeline.assemble import AssembledImage, ImageSource, assemble_image
from workers.pipeline.control import BuildControl
from workers.pipeline.fetch import redact_url
from workers.pipeline.image_build import docker_api
from workers.pipeline.outcomes import BuildErrored, BuildFailed
from workers.pipeline.steplog import StepLog

LOCAL_REPOSITORY = "cartridge-local"
DIRTY = "-dirty"
_CONTAINER_NAME = re.compile(r"[^a-zA-Z0-9_.-]+")


@dataclass(frozen=True)
class WorkingTree:
    root: Path
    sha: str
    dirty: bool
    source: str  # the origin remote without credentials, else the tree's file:// URL
    repository: str  # owner/name, from the origin remote's path, else local/<directory>

    @property
    def revision(self) -> str:
        return f"{self.sha}{DIRTY}" if self.dirty else self.sha

    @property
    def tag(self) -> str:
        return f"{LOCAL_REPOSITORY}/{default_image_name(self.repository)}:{self.revision}"


def inspect_tree(path: Path, *, repository: str | None = None) -> WorkingTree:
    """The git working tree at `path`; `BuildFailed` if it is none or has no commit yet."""
    root = Path(_git(path, "rev-parse", "--show-toplevel", problem="is not in a git working tree"))
    sha = _git(root, "rev-parse", "--verify", "HEAD^{commit}", problem="has no commit yet")
    status = _git(
        root, "status", "--porcelain", "--untracked-files=normal", problem="is unreadable"
    )
    try:
        origin = _git(root, "remote", "get-url", "origin", problem="has no origin remote")
    except BuildFailed:
        origin = ""
    return WorkingTree(
        root=root,
        sha=sha,
        dirty=bool(status),
        source=redact_url(origin) if origin else root.as_uri(),
        repository=repository or _repository_of(origin) or f"local/{root.name}",
    )


def stage_tree(tree: WorkingTree, destination: Path) -> int:
    """Copies the files git would commit into `destination`; returns how many."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=tree.root,
        capture_output=True,
        check=True,
    ).stdout
    destination.mkdir(parents=True)
    count = 0
    for raw in sorted(set(listing.split(b"\0")) - {b""}):
        relative = os.fsdecode(raw)
        source, target = tree.root / relative, destination / relative
        if not source.is_symlink() and not source.is_file():
            continue  # deleted in the tree, or a submodule (a build host does not fetch those)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copyfile(source, target)
            # What a git checkout creates: executable or not, nothing else.
            target.chmod(0o755 if os.access(source, os.X_OK) else 0o644)
        count += 1
    return count


def build_working_tree(
    path: Path,
    settings: Settings,
    *,
    log: StepLog,
    repository: str | None = None,
    base_image: str | None = None,
) -> tuple[WorkingTree, AssembledImage]:
    """Builds the working tree at `path` on the local engine and tags it `tree.tag`."""
    tree = inspect_tree(path, repository=repository)
    # A developer's machine runs no control plane for the build network to be kept from: the
    # build runs within the same limits on the same network, without the deny list's rules
    # (which would need root).
    settings = settings.model_copy(update={"build_firewall": "off"})
    started_at = datetime.now(UTC)
    api = docker_api(settings.docker_host)
    control = BuildControl(api, deadline=time.monotonic() + settings.build_timeout_seconds)
    note = " (with uncommitted changes)" if tree.dirty else ""
    log.line(f"==> build {tree.repository}@{tree.revision}{note} from {tree.root}")
    with tempfile.TemporaryDirectory(prefix="cartridge-build-") as scratch:
        checkout = Path(scratch) / "checkout"
        with log.step("stage", str(tree.root)):
            log.line(f"{stage_tree(tree, checkout)} files")
        image = assemble_image(
            ImageSource(
                checkout=checkout,
                revision=tree.revision,
                source=tree.source,
                repository=tree.repository,
                base_image=base_image or settings.base_image,
                tag=tree.tag,
            ),
            settings,
            api=api,
            log=log,
            control=control,
            started=started_at,
        )
    return tree, image


def container_name(api: docker.APIClient, role: str) -> tuple[str, int]:
    """`ROLE-N` with the smallest N no container has yet (a helper role loses its dot)."""
    base = _CONTAINER_NAME.sub("-", role.lstrip(".")).strip("-.") or "role"
    taken = {
        name.lstrip("/")
        for container in api.containers(all=True, filters={"name": f"{base}-"})
        for name in container.get("Names") or []
    }
    for number in itertools.count(1):
        if f"{base}-{number}" not in taken:
            return f"{base}-{number}", number
    raise AssertionError("unreachable")


def create_role_container(
    settings: Settings,
    image: str,
    role: str,
    arguments: list[str],
    *,
    publish: list[str],
    environment: list[str],
    interactive: bool,
) -> str:
    """Creates the container of `role` (removed when it stops), named `ROLE-N` with the hostname
    `ROLE-N.<this host's FQDN>`; returns its name."""
    api = docker_api(settings.docker_host)
    try:
        api.inspect_image(image)
    except docker.errors.ImageNotFound as exc:
        raise BuildFailed(f"no image {image} here: run `cartridge build` first") from exc
    ports, bindings = _port_bindings(publish)
    for _attempt in range(20):
        name, _ = container_name(api, role)
        try:
            api.create_container(
                image,
                command=[role, *arguments],
                name=name,
                hostname=role_hostname(name),
                environment=environment,
                ports=ports,
                tty=interactive,
                stdin_open=interactive,
                host_config=api.create_host_config(port_bindings=bindings, auto_remove=True),
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                continue  # another `cartridge run` took that name meanwhile
            raise BuildErrored(f"could not create the container: {exc.explanation}") from exc
        except requests.RequestException as exc:
            raise BuildErrored(f"could not create the container: {exc}") from exc
        return name
    raise BuildErrored(f"could not find a free container name for {role}")


def role_hostname(name: str) -> str:
    """`ROLE-N.<this host's FQDN>`, or `ROLE-N` alone past the kernel's 64-byte hostname limit."""
    hostname = f"{name}.{socket.getfqdn()}"
    return hostname if len(hostname) <= 64 else name


def _port_bindings(publish: list[str]) -> tuple[list[int], dict[int, tuple[str, int] | int]]:
    """`-p` values as Docker takes them: `8000` (same port on 127.0.0.1), `8080:8000`, or
    `0.0.0.0:8080:8000`."""
    ports: list[int] = []
    bindings: dict[int, tuple[str, int] | int] = {}
    for spec in publish:
        parts = spec.split(":")
        try:
            numbers = [int(part) for part in parts[-2:]]
        except ValueError as exc:
            raise BuildFailed(
                f"-p {spec}: expected PORT, HOST_PORT:PORT or IP:HOST_PORT:PORT"
            ) from exc
        container_port = numbers[-1]
        host_port = numbers[0] if len(parts) >= 2 else container_port
        address = parts[0] if len(parts) == 3 else "127.0.0.1"
        ports.append(container_port)
        bindings[container_port] = (address, host_port)
    return ports, bindings


def _repository_of(origin: str) -> str | None:
    if not origin:
        return None
    path = urlsplit(origin).path if "://" in origin else origin.rpartition(":")[2]
    parts = [part for part in path.removesuffix("/").removesuffix(".git").split("/") if part]
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def _git(cwd: Path, *args: str, problem: str) -> str:
    if not cwd.is_dir():
        raise BuildFailed(f"{cwd} is not a directory")
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "git failed"
        raise BuildFailed(f"{cwd} {problem} ({detail})")
    return result.stdout.strip()
