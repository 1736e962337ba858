"""The nginx config of the caching pull proxy, rendered from the replicas and their recorded
health, and checked with `nginx -t` before anyone is given it."""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.errors import ErrorCode, ServerError, ServiceUnavailable
from app.registries import queries
from app.registries.distribution import base_url
from app.registries.proxy_auth import auth_values
from app.registries.service import parse_address

log = logging.getLogger(__name__)

# Package data (pyproject.toml), so an installed Cartridge renders the proxy config without the
# source tree.
TEMPLATE = resources.files("app.registries") / "templates" / "cartridge-proxy.conf.template"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
DIGEST_CACHE_VALID = "365d"
CACHE_LOCK_TIMEOUT = "15m"
KEYS_ZONE_SIZE = "64m"  # about half a million cached objects
NGINX_TEST_TIMEOUT_SECONDS = 30


class ProxyConfigInvalid(ServerError):
    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=ErrorCode.PROXY_CONFIG_INVALID, **details)


class ProxyConfigUnavailable(ServiceUnavailable):
    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=ErrorCode.NGINX_UNAVAILABLE, **details)


@dataclass(frozen=True)
class Upstream:
    address: str
    healthy: bool = True


def upstreams(session: Session, settings: Settings) -> list[Upstream]:
    """The configured replicas; with none configured, the registry builds push to."""
    registries = queries.list_registries(session)
    if not registries:
        return [Upstream(settings.registry_url)]
    # A replica in maintenance is left out, unless that would leave none.
    registries = [r for r in registries if not r.maintenance] or registries
    # A row written before addresses were validated, or by hand, must not take the proxy of
    # every replica down with it: it is left out, and said so.
    usable = []
    for registry in registries:
        address = parse_address(registry.url)
        if address is None:
            log.warning(
                "replica %r left out of the proxy config: its address does not parse", registry.name
            )
        else:
            usable.append(Upstream(address, registry.healthy))
    if not usable:
        raise ProxyConfigInvalid(
            "No replica has an address that parses; fix them with PATCH /registries/{name}.",
            replicas=[r.name for r in registries],
        )
    return usable


def render(
    replicas: list[Upstream],
    settings: Settings,
    *,
    runtime_dir: Path | None = None,
    cache_path: Path | None = None,
) -> str:
    """The config text; `runtime_dir` and `cache_path` default to the settings."""
    schemes = {base_url(r.address).split("://", 1)[0] for r in replicas}
    if len(schemes) != 1:
        raise ProxyConfigInvalid(
            "The replicas mix http and https; nginx reaches one upstream group with one scheme.",
            addresses=[r.address for r in replicas],
        )
    runtime_dir = runtime_dir or settings.proxy_runtime_dir
    values = {
        **auth_values(settings, runtime_dir),
        "replica_count": str(len(replicas)),
        "user_directive": f"user {settings.proxy_worker_user};\n"
        if settings.proxy_worker_user
        else "",
        "worker_processes": settings.proxy_worker_processes,
        "runtime_dir": str(runtime_dir),
        "cache_path": str(cache_path or settings.proxy_cache_path),
        "keys_zone_size": KEYS_ZONE_SIZE,
        "cache_max_size": settings.proxy_cache_max_size,
        "cache_inactive": settings.proxy_cache_inactive,
        "upstream_servers": _server_lines(replicas),
        "upstream_scheme": schemes.pop(),
        "listen": settings.proxy_listen or settings.proxy_host,
        "connect_timeout": f"{max(1, round(settings.registry_connect_timeout_seconds))}s",
        "cache_lock_timeout": CACHE_LOCK_TIMEOUT,
        "digest_cache_valid": DIGEST_CACHE_VALID,
        "tag_cache_valid": f"{settings.proxy_tag_cache_seconds}s",
    }
    return fill(TEMPLATE.read_text(encoding="utf-8"), values)


def _user_directive(user: str | None) -> str:
    return f"user {user};\n" if user else ""


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replaces each `{{name}}` (nginx owns `$`, so string.Template's syntax would clash)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"the proxy template needs a value for {{{{{name}}}}}")
        return values[name]

    return PLACEHOLDER.sub(value, template)


def _server_lines(replicas: list[Upstream]) -> str:
    # Unhealthy replicas stay as backups: nginx asks them only when every healthy one has failed
    # or lacks the object. When none is recorded healthy the records may be stale: try them all.
    any_healthy = any(r.healthy for r in replicas)
    lines = []
    for replica in replicas:
        flags = " max_fails=1 fail_timeout=10s"
        note = ""
        if any_healthy and not replica.healthy:
            flags, note = " backup", "  # unhealthy at the last check"
        lines.append(f"        server {_host_port(replica.address)}{flags};{note}")
    return "\n".join(lines)


def _host_port(address: str) -> str:
    url = base_url(address)
    scheme, _, host_port = url.partition("://")
    if re.search(r":\d+$", host_port):
        return host_port
    return f"{host_port}:{443 if scheme == 'https' else 80}"


def check(replicas: list[Upstream], settings: Settings) -> None:
    """Runs `nginx -t` on the config rendered with private paths (so that checking never touches
    the real proxy's files and needs no privileges); raises when nginx refuses it."""
    with tempfile.TemporaryDirectory(prefix="cartridge-proxy-check-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(render(replicas, settings, runtime_dir=Path(tmp), cache_path=Path(tmp)))
        command = [settings.nginx_binary, "-t", "-q", "-e", "stderr", "-p", tmp, "-c", str(conf)]
        try:
            completed = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=NGINX_TEST_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProxyConfigUnavailable(
                f"nginx could not check the proxy config: {exc}", binary=settings.nginx_binary
            ) from exc
        output = (completed.stderr or completed.stdout).strip().replace(tmp, "<check-dir>")
    if completed.returncode != 0:
        raise ProxyConfigInvalid(
            "nginx refuses the generated proxy config.", nginx_output=output[-2000:]
        )


def proxy_config(session: Session, settings: Settings | None = None) -> str:
    """The proxy config for the current replicas, after `nginx -t` has accepted it."""
    settings = settings or get_settings()
    replicas = upstreams(session, settings)
    check(replicas, settings)
    return render(replicas, settings)
