"""The addresses a build must not reach: the control plane's own, derived from the settings, the
cloud metadata address, and the operator's `CARTRIDGE_BUILD_DENY`.

An entry is `HOST`, `HOST:PORT`, `CIDR`, `CIDR:PORT` or a URL (`redis://redis:6379/0`); a host
name is resolved when a build starts. An address of the build host itself (loopback, `0.0.0.0`
or one of its interfaces' addresses) means "this port on the build host", whatever address the
build would use to reach it. The build network has no IPv6, so IPv6 addresses need no rule.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.config import Settings
from workers.pipeline.outcomes import BuildErrored

# Cloud instance metadata (AWS, GCP, Azure, OpenStack...): credentials of the build host itself.
METADATA_ADDRESS = "169.254.169.254"
_DEFAULT_PORTS = {
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "http": 80,
    "https": 443,
    "tcp": 2375,
}


@dataclass(frozen=True)
class Denied:
    network: ipaddress.IPv4Network
    port: int | None  # None: every port
    local: bool  # the build host itself
    why: str  # e.g. "the database (CARTRIDGE_DATABASE_URL)"

    def describe(self) -> str:
        where = "this host" if self.local else str(self.network)
        return f"{where}:{self.port}" if self.port is not None else where


def control_plane(settings: Settings, replica_urls: Iterable[str]) -> list[tuple[str, str]]:
    """(entry, why) for every service of the control plane the settings name."""
    entries: list[tuple[str, str]] = []
    if settings.database_url and not settings.database_url.startswith("sqlite"):
        entries.append((settings.database_url, "the database (CARTRIDGE_DATABASE_URL)"))
    broker = settings.broker_url
    if "://" in broker and not broker.startswith(("filesystem:", "memory:")):
        entries.append((broker, "the broker (CARTRIDGE_BROKER_URL)"))
    entries.append((_registry(settings.registry_url), "the registry (CARTRIDGE_REGISTRY_URL)"))
    if settings.registry_push_url:
        entries.append(
            (_registry(settings.registry_push_url), "the registry (CARTRIDGE_REGISTRY_PUSH_URL)")
        )
    declared = [registry.url for registry in settings.registries]
    entries += [(_registry(url), "a registry replica") for url in [*declared, *replica_urls]]
    entries.append((settings.proxy_host, "the pull proxy (CARTRIDGE_PROXY_HOST)"))
    if settings.proxy_listen:
        entries.append((settings.proxy_listen, "the pull proxy (CARTRIDGE_PROXY_LISTEN)"))
    entries.append((settings.public_url, "the API (CARTRIDGE_PUBLIC_URL)"))
    if settings.docker_host and settings.docker_host.startswith("tcp://"):
        entries.append((settings.docker_host, "the Docker engine (CARTRIDGE_DOCKER_HOST)"))
    entries.append((METADATA_ADDRESS, "the cloud metadata service"))
    entries += [(entry, "CARTRIDGE_BUILD_DENY") for entry in settings.build_deny]
    return entries


def _registry(url: str) -> str:
    # Docker names registries host[:port] (443 when there is none); replicas may carry a scheme.
    if "://" in url:
        return url
    return url if ":" in url.split("/")[0] else f"{url}:443"


def resolve(entries: Iterable[tuple[str, str]]) -> list[Denied]:
    """Each entry as networks and ports; `BuildErrored` for an entry that cannot be read or
    resolved (a deny list that cannot be enforced stops builds rather than being skipped)."""
    denied: dict[tuple[ipaddress.IPv4Network, int | None], Denied] = {}
    for text, why in entries:
        host, port = parse(text)
        for network in _networks(host, text, why):
            local = _is_local(network)
            if local:
                network = ipaddress.IPv4Network("127.0.0.0/8")
            denied.setdefault((network, port), Denied(network, port, local, why))
    return list(denied.values())


def parse(text: str) -> tuple[str, int | None]:
    """(host, port) of an entry; the port is None when the entry names none."""
    value = text.strip()
    if "://" in value:
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError as exc:
            raise BuildErrored(f"the deny list entry {text!r} has an invalid port") from exc
        if not parts.hostname:
            raise BuildErrored(f"the deny list entry {text!r} names no host")
        return parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme.split("+")[0])
    if value.startswith("["):  # [IPv6]:port
        host, _, rest = value[1:].partition("]")
        return host, _port(rest.removeprefix(":"), text) if rest else None
    if value.count(":") > 1:  # a bare IPv6 address
        return value, None
    host, colon, port_text = value.partition(":")
    return (host, _port(port_text, text)) if colon else (value, None)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BuildErrored(f"the deny list entry {entry!r} has an invalid port {text!r}")
    return int(text)


def _networks(host: str, entry: str, why: str) -> list[ipaddress.IPv4Network]:
    if not host:
        raise BuildErrored(f"the deny list entry {entry!r} names no host")
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        pass
    else:
        return [network] if isinstance(network, ipaddress.IPv4Network) else []
    try:
        found = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BuildErrored(
            f"{host}, {why}, does not resolve on the build host, so builds cannot be kept from "
            f"it: {exc.strerror}"
        ) from exc
    return sorted({ipaddress.IPv4Network(info[4][0]) for info in found})


def _is_local(network: ipaddress.IPv4Network) -> bool:
    """Whether the network is (an address of) the build host itself."""
    if network.is_loopback:
        return True
    if network.num_addresses != 1:
        return False  # 0.0.0.0/0 is every address, not this host's
    if network.network_address.is_unspecified:
        return True
    # Only an address of this host can be bound to.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(network.network_address), 0))
        except OSError:
            return False
    return True
