"""Per-build working directories on the build host, removed when the build ends.

A workspace's name carries a random part: nothing in a repository (a relative symlink, a path in
a script) can name another build's checkout from its build id. The workspaces directory is
readable by the worker's user only.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# The random suffix is optional so that workspaces left by older versions are swept too.
_NAME = re.compile(r"^build-(\d+)-(\d+)(?:-[0-9a-f]+)?$")


def workspace_path(root: Path, build_id: int, attempt: int) -> Path:
    """A fresh, unguessable path for one build attempt: `build-<id>-<attempt>-<random>`."""
    return root / f"build-{build_id}-{attempt}-{secrets.token_hex(16)}"


@contextmanager
def workspace(root: Path, build_id: int, attempt: int) -> Iterator[Path]:
    """A path for one build attempt, empty on entry (not yet created) and removed on exit."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.chmod(0o700)
    path = workspace_path(root, build_id, attempt)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale(root: Path, is_live: Callable[[int, int], bool]) -> list[Path]:
    """Removes the workspaces a killed worker left behind: those whose build attempt
    `is_live(build_id, attempt)` denies. Returns what it removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and not is_live(int(match.group(1)), int(match.group(2))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
