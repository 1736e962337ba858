"""`cartridge base build`: a base image made with debootstrap from Debian's packages, imported into
the local Docker engine, pushed to Cartridge's registry and named by its manifest digest.

The root filesystem is made on this machine (debootstrap needs root), trimmed of apt's caches, and
imported as a single layer; no registry other than Cartridge's own is involved.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import docker

from workers.pipeline.control import BuildControl
from workers.pipeline.outcomes import BuildErrored
from workers.pipeline.publish import push_and_verify
from workers.pipeline.steplog import StepLog

ENVIRONMENT = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["/bin/sh"]',
)
# What an image does not need of a fresh debootstrap: package caches and lists, logs.
_TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "var/cache/debconf")


@dataclass(frozen=True)
class BaseSpec:
    suite: str
    mirror: str
    variant: str
    packages: tuple[str, ...]
    name: str


def read_config(directory: Path) -> BaseSpec:
    """deploy/base/debootstrap.conf (KEY=value lines) and packages.txt (one per line)."""
    values: dict[str, str] = {}
    for line in (directory / "debootstrap.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    packages = tuple(
        line.strip()
        for line in (directory / "packages.txt").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    )
    return BaseSpec(
        suite=values.get("SUITE", "bookworm"),
        mirror=values.get("MIRROR", "http://deb.debian.org/debian"),
        variant=values.get("VARIANT", "minbase"),
        packages=packages,
        name=values.get("NAME", "cartridge/base"),
    )


def build_base(
    spec: BaseSpec,
    *,
    api: docker.APIClient,
    registry: str,
    engine_registry: str,
    log: StepLog,
    control: BuildControl,
    push: bool = True,
    cache_dir: Path | None = None,
) -> str:
    """Builds, imports and (unless `push` is false) pushes the base image; returns its reference:
    `engine_registry/name@sha256:...` once pushed (the digest `registry` confirms), else the
    local tag."""
    if shutil.which("debootstrap") is None:
        raise BuildErrored("debootstrap is not installed (Debian's debootstrap package)")
    tag = f"{spec.suite}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    repository = f"{engine_registry}/{spec.name}"
    with tempfile.TemporaryDirectory(prefix="cartridge-base-") as scratch:
        root = Path(scratch) / "root"
        command = ["debootstrap", f"--variant={spec.variant}"]
        if cache_dir is not None:
            # The downloaded packages, kept for the next build (debootstrap checks them).
            cache_dir.mkdir(parents=True, exist_ok=True)
            command.append(f"--cache-dir={cache_dir.resolve()}")
        if spec.packages:
            command.append(f"--include={','.join(spec.packages)}")
        command += [spec.suite, str(root), spec.mirror]
        with log.step("debootstrap", " ".join(command)):
            _run(command, log)
        with log.step("import", f"{repository}:{tag}"):
            for relative in _TRIM:
                for path in (root / relative).glob("*"):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
            archive = Path(scratch) / "root.tar"
            with tarfile.open(archive, "w") as tar:
                tar.add(root, arcname=".", filter=_numeric)
            api.import_image(
                src=str(archive), repository=repository, tag=tag, changes=list(ENVIRONMENT)
            )
    if not push:
        return f"{repository}:{tag}"
    with log.step("push", f"{repository}:{tag}"):
        published = push_and_verify(
            api,
            registry,
            spec.name,
            tag,
            log=log,
            control=control,
            engine_registry=engine_registry,
        )
    return f"{repository}@{published.manifest.digest}"


def _numeric(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uname = info.gname = ""
    return info


def _run(command: list[str], log: StepLog) -> None:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)
    if process.wait() != 0:
        raise BuildErrored(f"{command[0]} exited with status {process.returncode} (see above)")
