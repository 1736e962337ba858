"""A build step's process-limit counter, read from the build host's cgroup filesystem.

The engine's API reports how many processes a container has, not how often the kernel refused it
one: `pids.events` does ("max N"). It is readable when the worker runs on the engine's host (the
documented layout); elsewhere `refusals()` finds nothing and the watcher relies on the count.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def pids_events(pid: int, container_id: str) -> Path | None:
    """The `pids.events` file of the container whose main process is `pid` (a PID of the
    host's namespace, as the engine reports it), or None if this worker cannot see it."""
    try:
        membership = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in membership.splitlines():
        _, controllers, path = line.split(":", 2)
        # A PID of another namespace may name an unrelated process here: the path must be the
        # container's own.
        if container_id not in path:
            continue
        if "pids" in controllers.split(","):
            candidate = CGROUP_ROOT / "pids" / path.lstrip("/") / "pids.events"  # cgroup v1
        elif not controllers:
            candidate = CGROUP_ROOT / path.lstrip("/") / "pids.events"  # cgroup v2
        else:
            continue
        if candidate.is_file():
            return candidate
    return None


def refusals(events: Path) -> int | None:
    """How many times the kernel refused the cgroup a new process, or None if it is gone."""
    try:
        text = events.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "max" and value.strip().isdigit():
            return int(value)
    return None
