"""A throwaway CNCF Distribution registry (`docker-registry`) on a free loopback port: its own
config, storage and access log under a caller's directory; stoppable and restartable."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.server import free_port

ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: {deletes}
  maintenance:
    readonly:
      enabled: {read_only}
http:
  addr: 127.0.0.1:{port}
  secret: {secret}
  relativeurls: true
"""


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout}s")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass
class RunningRegistry:
    directory: Path
    name: str = "registry"
    port: int = field(default_factory=free_port)
    # More top-level YAML for the registry's config, e.g. an `auth:` section.
    extra_config: str = ""
    # A registry in maintenance: it serves pulls and refuses uploads.
    read_only: bool = False
    # Distribution refuses manifest deletes (405) unless storage.delete.enabled is set.
    deletes_enabled: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """host:port, the way Docker names a registry."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def log_path(self) -> Path:
        return self.directory / "registry.log"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "config.yml"
        config.write_text(
            CONFIG.format(
                storage=self.directory / "storage",
                port=self.port,
                secret=uuid.uuid4().hex,
                read_only=str(self.read_only).lower(),
                deletes=str(self.deletes_enabled).lower(),
            )
            + self.extra_config
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self.is_up, f"registry {self.name} at {self.url}")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def is_up(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"registry {self.name} exited: {self.log_path.read_text()[-2000:]}")
        try:
            # 401: a registry that asks for credentials is up too.
            return httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401)
        except httpx.HTTPError:
            return False

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request the registry served, from its access log."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [
            (m["method"], m["path"], int(m["status"]))
            for m in (ACCESS_LINE.search(line) for line in text.splitlines())
            if m
        ]


@contextmanager
def run_registry(directory: Path, port: int | None = None) -> Iterator[RunningRegistry]:
    registry = RunningRegistry(directory, port=port or free_port())
    try:
        registry.start()
        yield registry
    finally:
        registry.stop()
