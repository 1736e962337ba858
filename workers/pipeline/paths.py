"""Paths of a checkout that Cartridge reads while preparing a build.

A repository controls its symlinks. Cartridge reads a path of the checkout (a convention file, a
dependency manifest, a tree it adds to the build context) only when every symlink on the way
resolves inside the checkout: a link to `/etc`, to the worker's home or to another build's
workspace fails the build instead of copying a host file into an image layer. Links that Cartridge
copies as links without reading them (inside `container/files/` and the repository tree) stay
links in the image, where they point into the image, not the host.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from workers.pipeline.outcomes import BuildFailed


def inside_checkout(checkout: Path, relative: str) -> Path:
    """`checkout / relative` with every symlink on the way resolved, or `BuildFailed` naming
    the path (and the link that leads out) when it resolves outside the checkout."""
    root = Path(os.path.realpath(checkout))
    parts = PurePosixPath(relative).parts
    current = root
    for index, part in enumerate(parts):
        candidate = current / part
        if not candidate.is_symlink():
            current = candidate
            continue
        resolved = Path(os.path.realpath(candidate))
        if not resolved.is_relative_to(root):
            link = "/".join(parts[: index + 1])
            raise BuildFailed(_escape(relative, link, os.readlink(candidate)))
        current = resolved
    return current


def _escape(relative: str, link: str, target: str) -> str:
    """The message names the repository's own link text, never the host path it resolves to."""
    where = (
        f"{relative} is a symlink to {target!r}"
        if link == relative
        else f"{relative} leads through the symlink {link} -> {target!r}"
    )
    return (
        f"{where}, outside the checkout: Cartridge reads nothing outside the repository "
        "while preparing a build (make it a file, or a link within the repository)"
    )
