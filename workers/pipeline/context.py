"""The generated Dockerfile and the build context (a tar file) for a checked-out repository.

Layer order, slowest-changing first, so the classic builder's cache keeps what it can:

1. the base image;
2. Cartridge's launcher into `/cartridge/`, a check that the base has `/bin/sh`, and the launcher
   as the entrypoint (see `workers/pipeline/launcher`): cache hits for every build on that base;
3. `container/files/` into `/` (system configuration changes rarely);
4. only if the repository has `container/dependencies`: that executable and the dependency
   manifests (`Gemfile.lock`, `package-lock.json`, ...) into `/app`, then the executable runs.
   While these files are byte-identical the step is a cache hit, whatever else changed;
5. the whole repository and `/app/REVISION` into `/app`, then `container/compile` runs;
6. the role table the launcher reads, from container/roles.json.

The builder keys COPY layers on file contents (not times). The labels (revision, creation time,
roles) come last, in one LABEL instruction: per-build metadata never invalidates a cached layer,
and one instruction costs one metadata commit instead of one per label.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from workers.pipeline.conventions import COMPILE, DEPENDENCIES, FILES, Conventions
from workers.pipeline.launcher import (
    CONTEXT_LAUNCHER,
    CONTEXT_ROLES,
    ENTRYPOINT,
    LAUNCHER_DIR,
    SHELL_CHECK,
    Launcher,
    add_roles,
)
from workers.pipeline.outcomes import BuildErrored, BuildFailed
from workers.pipeline.paths import inside_checkout
from workers.pipeline.roles import Role, stored_roles

# Root-level files a dependency installer reads; matched with Path.glob.
DEPENDENCY_MANIFESTS = (
    "Gemfile",
    "Gemfile.lock",
    "*.gemspec",
    ".ruby-version",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".nvmrc",
    ".node-version",
    "requirements*.txt",
    "constraints*.txt",
    "Pipfile",
    "Pipfile.lock",
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "setup.cfg",
    ".python-version",
    "go.mod",
    "go.sum",
    "Cargo.toml",
    "Cargo.lock",
    "composer.json",
    "composer.lock",
    "mix.exs",
    "mix.lock",
    ".tool-versions",
)
REVISION = "REVISION"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_ROLES = "dev.cartridge.roles"
LABEL_REPOSITORY = "dev.cartridge.repository"
# A reference as Docker spells it: [host[:port]/]path[:tag][@digest], no spaces or quotes.
_IMAGE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")


@dataclass(frozen=True)
class BuildContext:
    """The generated Dockerfile, and the files of a checkout laid out for it."""

    checkout: Path
    sha: str
    conventions: Conventions
    dockerfile: str
    launcher: Launcher

    def write(self, out: BinaryIO) -> None:
        """Writes the context as a tar stream to `out`; `.git` is left out."""
        checkout = self.checkout
        with tarfile.open(fileobj=out, mode="w|") as tar:
            _add_bytes(tar, "Dockerfile", self.dockerfile.encode())
            self.launcher.add_to(tar)
            add_roles(tar, self.conventions.roles)
            if self.conventions.has_files:
                _add_tree(tar, inside_checkout(checkout, FILES), "files")
            if self.conventions.has_dependencies:
                for relative in dependency_paths(checkout):
                    # A manifest linked within the repository goes in as the file it names.
                    source = inside_checkout(checkout, relative)
                    tar.add(source, f"dependencies/{relative}", filter=_normalise)
            # /app/REVISION is Cartridge's: a file of that name in the repository is replaced.
            _add_tree(tar, checkout, "repository", skip_top_level=frozenset({REVISION}))
            _add_bytes(tar, f"repository/{REVISION}", f"{self.sha}\n".encode())


def image_labels(
    *, sha: str, source: str, created: str, repository: str, roles: dict[str, Role]
) -> dict[str, str]:
    return {
        LABEL_REVISION: sha,
        LABEL_SOURCE: source,
        LABEL_CREATED: created,
        LABEL_REPOSITORY: repository,
        LABEL_ROLES: json.dumps(
            stored_roles(roles), separators=(",", ":"), sort_keys=True, ensure_ascii=True
        ),
    }


def dockerfile(base_image: str, conventions: Conventions, labels: dict[str, str]) -> str:
    if not _IMAGE_REFERENCE.match(base_image):
        raise BuildErrored(f"the base image {base_image!r} is not a valid image reference")
    # WORKDIR first: right after FROM it is a cache hit for every build on this base image.
    lines = [
        f"FROM {base_image}",
        "WORKDIR /app",
        f"COPY {CONTEXT_LAUNCHER}/ {LAUNCHER_DIR}/",
        SHELL_CHECK,
        f"ENTRYPOINT {json.dumps(ENTRYPOINT)}",
        # A base image's CMD would otherwise be taken for a role name.
        "CMD []",
    ]
    if conventions.has_files:
        lines.append("COPY files/ /")
    if conventions.has_dependencies:
        lines += ["COPY dependencies/ /app/", f'RUN ["/app/{DEPENDENCIES}"]']
    # REVISION travels inside repository/: one layer (and one blob to push) fewer.
    lines += ["COPY repository/ /app/", f'RUN ["/app/{COMPILE}"]']
    lines.append(f"COPY {CONTEXT_ROLES}/ {LAUNCHER_DIR}/")
    if labels:
        pairs = " ".join(f"{_quote(key)}={_quote(value)}" for key, value in labels.items())
        lines.append(f"LABEL {pairs}")
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    """A Dockerfile double-quoted word that the builder reads back as exactly `value`: inside
    double quotes it unescapes backslash, quote and dollar (no variable expansion)."""
    if "\n" in value or "\r" in value:
        raise BuildErrored(f"a label value cannot span lines: {value!r}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def dependency_paths(checkout: Path) -> list[str]:
    """`container/dependencies` and the root-level manifests, each resolved inside the
    checkout (`BuildFailed` otherwise) and each a file."""
    found = {DEPENDENCIES}
    for pattern in DEPENDENCY_MANIFESTS:
        found.update(
            path.name for path in checkout.glob(pattern) if path.is_file() or path.is_symlink()
        )
    for relative in found:
        resolved = inside_checkout(checkout, relative)
        if not resolved.is_file():
            raise BuildFailed(
                f"{relative} is a dependency manifest, so it must be a file (or a link to a file "
                "within the repository)"
            )
    return sorted(found)


def build_context(
    checkout: Path,
    sha: str,
    conventions: Conventions,
    *,
    base_image: str,
    labels: dict[str, str],
    launcher: Launcher,
) -> BuildContext:
    if conventions.has_dependencies:
        dependency_paths(checkout)  # refuses manifests outside the checkout before any build
    return BuildContext(
        checkout=checkout,
        sha=sha,
        conventions=conventions,
        dockerfile=dockerfile(base_image, conventions, labels),
        launcher=launcher,
    )


def _add_tree(
    tar: tarfile.TarFile, root: Path, prefix: str, skip_top_level: frozenset[str] = frozenset()
) -> None:
    """Adds `root` as `prefix`, without `.git` directories (nor the top-level names in
    `skip_top_level`); symlinks stay symlinks."""
    for directory, subdirectories, files in os.walk(root, onerror=_raise):
        here = Path(directory)
        if here == root:
            subdirectories[:] = [name for name in subdirectories if name not in skip_top_level]
            files = [name for name in files if name not in skip_top_level]
        # os.walk lists symlinks to directories as directories but does not enter them.
        links = [name for name in subdirectories if (here / name).is_symlink()]
        subdirectories[:] = sorted(
            name for name in subdirectories if name != ".git" and name not in links
        )
        relative = here.relative_to(root).as_posix()
        target = prefix if relative == "." else f"{prefix}/{relative}"
        tar.add(here, target, recursive=False, filter=_normalise)
        for name in sorted([*files, *links]):
            if name != ".git":
                tar.add(here / name, f"{target}/{name}", recursive=False, filter=_normalise)


def _raise(error: OSError) -> None:
    # os.walk skips what it cannot list; a context missing files must not build.
    raise error


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The files belong to root in the image whoever runs the worker.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
