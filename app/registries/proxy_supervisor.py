"""`cartridge proxy serve`: runs the pull proxy's nginx and keeps its config current.

Every `CARTRIDGE_PROXY_REFRESH_SECONDS` the config is rendered from the replicas and their recorded
health. When it differs from the one nginx runs, it is checked with `nginx -t` first: a config that
nginx refuses is never loaded (the proxy keeps serving with the previous one) and the refusal is
recorded for the API (`GET /api/v1/proxies`), the metrics and the log. An accepted config is
written atomically and nginx is started, or reloaded (`nginx -s reload`: running requests finish on
the old workers, so pulls in flight are not cut). Each pass also records the pulls the proxy served
since the last one (from its access log), which image retention counts as use.

Each proxy host records what it runs in `proxy_hosts`, one row per host name. The database is read
in one short transaction per pass; nginx is never called inside one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import subprocess
import threading
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import get_session_factory
from app.errors import CartridgeError
from app.models import ProxyHost
from app.models.base import utcnow
from app.registries.proxy import check, render, upstreams
from app.retention.pulls import AccessLogReader, record_pulls

log = logging.getLogger(__name__)
NGINX_SIGNAL_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class ApplyResult:
    changed: bool  # a new config was loaded
    error: str | None = None  # why the newest config was refused or nginx failed


class ProxySupervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime_dir = settings.proxy_runtime_dir
        self.config_path = settings.proxy_config_path
        self.access_log = AccessLogReader(self.runtime_dir / "access.log")

    def apply_once(self) -> ApplyResult:
        """Renders the config; loads it if it changed and nginx accepts it."""
        try:
            with get_session_factory()() as session:
                replicas = upstreams(session, self.settings)
            text = render(replicas, self.settings)
            if text == self._current() and self.nginx_running():
                result = ApplyResult(changed=False)
            else:
                check(replicas, self.settings)
                self._write(text)
                self._start_or_reload()
                result = ApplyResult(changed=True)
        except CartridgeError as exc:
            details = "; ".join(f"{k}: {v}" for k, v in exc.details.items())
            result = ApplyResult(changed=False, error=f"{exc.message} {details}".strip())
        except (OSError, subprocess.SubprocessError) as exc:
            result = ApplyResult(changed=False, error=f"nginx could not be run: {exc}")
        if result.error:
            log.error("pull proxy config not loaded: %s", result.error)
        elif result.changed:
            log.info("pull proxy config loaded (%s)", self.config_path)
        self._record(result)
        return result

    def run(self, stop: threading.Event) -> None:
        """Applies the config every refresh interval until `stop` is set, then stops nginx."""
        try:
            while not stop.is_set():
                self.apply_once()
                stop.wait(self.settings.proxy_refresh_seconds)
        finally:
            self.stop_nginx()

    def nginx_running(self) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop_nginx(self) -> None:
        if self.nginx_running():
            self._nginx("-s", "quit")

    def _current(self) -> str | None:
        try:
            return self.config_path.read_text()
        except FileNotFoundError:
            return None

    def _write(self, text: str) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.settings.proxy_cache_path.mkdir(parents=True, exist_ok=True)
        self._hand_cache_to_workers()
        partial = self.config_path.with_suffix(".conf.new")
        partial.write_text(text)
        partial.replace(self.config_path)

    def _hand_cache_to_workers(self) -> None:
        # A root master runs its workers as another user, who must write the cache and the
        # temporary files of proxied responses.
        if os.geteuid() != 0:
            return
        user = self.settings.proxy_worker_user or "nobody"
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            return
        for path in (self.settings.proxy_cache_path, self.runtime_dir / "proxy"):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _start_or_reload(self) -> None:
        if self.nginx_running():
            self._nginx("-s", "reload")
        else:
            # nginx daemonizes itself; its master's pid is in the runtime directory.
            self._nginx()

    def _nginx(self, *args: str) -> None:
        command = [
            self.settings.nginx_binary,
            "-p",
            str(self.runtime_dir),
            "-c",
            str(self.config_path),
            "-e",
            "stderr",
            *args,
        ]
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=NGINX_SIGNAL_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0:
            output = (completed.stderr or completed.stdout).strip()[-2000:]
            raise subprocess.SubprocessError(f"{' '.join(command)} failed: {output}")

    def _pid(self) -> int | None:
        try:
            return int((self.runtime_dir / "nginx.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _record(self, result: ApplyResult) -> None:
        pulls = self.access_log.read_new()
        with get_session_factory()() as session:
            record_proxy_state(session, self.settings, result, self._current())
            record_pulls(session, pulls)
            session.commit()


def record_proxy_state(
    session: Session, settings: Settings, result: ApplyResult, running_config: str | None
) -> ProxyHost:
    """Upserts this host's row: the config it runs and the latest refusal, if any."""
    host = session.scalar(select(ProxyHost).where(ProxyHost.host_name == settings.host_name))
    if host is None:
        host = ProxyHost(host_name=settings.host_name, listen=settings.proxy_host, reloads=0)
        session.add(host)
    now = utcnow()
    host.listen = settings.proxy_host
    host.checked_at = now
    host.last_error = result.error
    if result.changed and running_config is not None:
        host.config_sha256 = hashlib.sha256(running_config.encode()).hexdigest()
        host.applied_at = now
        host.reloads = (host.reloads or 0) + 1
    session.flush()
    return host
