"""`cartridge registry gc NAME`: reclaiming a replica's space with Distribution's offline
garbage collector, one replica at a time, while pulls and builds go on elsewhere.

`garbage-collect` must never run on a registry that takes writes: it would delete the blobs of
uploads in progress. So the replica is first put in maintenance (out of the push set, the quorum,
the repair job and the proxy's upstreams) and every running proxy is given time to reload; then it
is stopped (the operator's `--stop` command), collected (a dry run first, logged), started again
(`--start`) and, once it answers, taken out of maintenance. The repair job then copies whatever it
missed meanwhile, and the proxy puts it back at its next pass.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import select

from app.config import Settings
from app.db import session_scope
from app.errors import Conflict, ServiceUnavailable
from app.models import ProxyHost
from app.models.base import utcnow
from app.registries import queries
from app.registries.distribution import base_url
from app.registries.service import get_registry, normalize_address

SUMMARY = re.compile(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion")
COMMAND_TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class GcReport:
    registry: str
    blobs_marked: int
    blobs_deleted: int
    manifests_deleted: int
    seconds: float

    def describe(self) -> str:
        return (
            f"{self.blobs_deleted} blobs and {self.manifests_deleted} manifests deleted, "
            f"{self.blobs_marked} blobs kept, in {self.seconds:.1f}s"
        )


def collect_garbage(
    name: str,
    settings: Settings,
    *,
    config: Path,
    stop: str | None,
    start: str | None,
    binary: str = "docker-registry",
    say: Callable[[str], None] = print,
    proxy_wait_seconds: float | None = None,
) -> GcReport:
    started = time.monotonic()
    url = _enter_maintenance(name, settings)
    say(f"{name} is in maintenance: out of the push set and the proxy")
    try:
        _wait_for_proxies(
            utcnow(),
            proxy_wait_seconds
            if proxy_wait_seconds is not None
            else settings.proxy_refresh_seconds * 3,
        )
        if stop:
            say(f"stopping {name}: {stop}")
            _run_shell(stop)
        dry = _collect(binary, config, dry_run=True)
        say(f"dry run: {dry.strip().splitlines()[-1] if dry.strip() else 'nothing to collect'}")
        output = _collect(binary, config, dry_run=False)
        if start:
            say(f"starting {name}: {start}")
            _run_shell(start)
        _wait_until_up(url, settings.registry_connect_timeout_seconds)
    except Exception:
        say(f"{name} stays in maintenance: bring it back, then `cartridge registry gc-done {name}`")
        raise
    marked, blobs, manifests = _summary(output)
    report = GcReport(name, marked, blobs, manifests, time.monotonic() - started)
    leave_maintenance(name, report=report.describe())
    say(f"{name} is back: {report.describe()}; the repair job copies what it missed")
    return report


def leave_maintenance(name: str, *, report: str | None = None) -> None:
    with session_scope() as session:
        registry = get_registry(session, name)
        registry.maintenance = False
        if report is not None:
            registry.last_gc_at = utcnow()
            registry.last_gc_report = report


def _enter_maintenance(name: str, settings: Settings) -> str:
    with session_scope() as session:
        registry = get_registry(session, name)
        others = [r for r in queries.serving_registries(session) if r.id != registry.id]
        if not others:
            raise Conflict(
                f"{name} is the only replica in service: collecting it would stop every pull.",
                code="registry_gc_last_replica",
            )
        if normalize_address(registry.url) == normalize_address(settings.registry_url):
            raise Conflict(
                f"{name} is the replica builds push to (CARTRIDGE_REGISTRY_URL): point the build "
                "hosts at another replica first.",
                code="registry_gc_push_replica",
            )
        registry.maintenance = True
        return registry.url


def _wait_for_proxies(since: datetime, timeout: float) -> None:
    """Until every proxy host has rendered a config after `since` (so none sends pulls to the
    replica), or `timeout` passed. With no proxy host recorded there is nothing to wait for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            hosts = list(session.scalars(select(ProxyHost)))
            if all(h.checked_at >= since and h.last_error is None for h in hosts):
                return
        time.sleep(0.5)


def _collect(binary: str, config: Path, *, dry_run: bool) -> str:
    command = [binary, "garbage-collect", *(["--dry-run"] if dry_run else []), str(config)]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
    )
    if completed.returncode != 0:
        raise ServiceUnavailable(
            f"{' '.join(command)} failed: {(completed.stderr or completed.stdout)[-2000:]}",
            code="registry_gc_failed",
        )
    return completed.stdout + completed.stderr


def _run_shell(command: str) -> None:
    completed = subprocess.run(
        shlex.split(command),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise ServiceUnavailable(
            f"{command} failed: {(completed.stderr or completed.stdout)[-2000:]}",
            code="registry_gc_command_failed",
        )


def _wait_until_up(url: str, timeout: float, attempts: int = 120) -> None:
    for _ in range(attempts):
        try:
            if httpx.get(f"{base_url(url)}/v2/", timeout=timeout).status_code in (200, 401):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServiceUnavailable(f"{url} did not answer after the collection", code="registry_down")


def _summary(output: str) -> tuple[int, int, int]:
    match = SUMMARY.search(output)
    if match is None:
        return 0, 0, 0
    return int(match.group(1)), int(match.group(2)), int(match.group(3))
