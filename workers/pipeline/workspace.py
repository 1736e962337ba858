"""Per-build working directories on the build host, removed when the build ends."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_NAME = re.compile(r"^build-(\d+)-(\d+)$")


def workspace_path(root: Path, build_id: int, attempt: int) -> Path:
    return root / f"build-{build_id}-{attempt}"


@contextmanager
def workspace(root: Path, build_id: int, attempt: int) -> Iterator[Path]:
    """A path for one build attempt, empty on entry (not yet created) and removed on exit."""
    path = workspace_path(root, build_id, attempt)
    shutil.rmtree(path, ignore_errors=True)
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
