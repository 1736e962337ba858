"""Registry replicas: configuration rules, health, and how images are named on them."""

from __future__ import annotations

import asyncio
import ipaddress
import re

from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope
from app.engine import insert_for
from app.errors import BadRequest, Conflict, ErrorCode, NotFound
from app.models import Registry
from app.models.base import utcnow
from app.registries import queries
from app.registries.copier import probe
from app.registries.distribution import base_url

DEFAULT_REGISTRY_NAME = "default"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# Only what nginx and Docker accept as an upstream address: the address ends up verbatim in the
# generated proxy config, so nothing else (spaces, `;`, braces) may get through.
ADDRESS_PATTERN = re.compile(
    r"^(?:(?P<scheme>[A-Za-z]+)://)?(?P<host>\[[^\]]*\]|[^:/\[\]]+)(?::(?P<port>[0-9]{1,5}))?/?$"
)
DNS_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
RESERVED_NAMES = frozenset({"proxy-config"})  # a path of the registries API


def parse_address(url: str) -> str | None:
    """The normalized `[http(s)://]host[:port]`, or None when `url` is not one: the host is a DNS
    name, an IPv4 address or a bracketed IPv6 address, the port is 1-65535."""
    match = ADDRESS_PATTERN.match(url.strip())
    if match is None:
        return None
    scheme, host, port = match.group("scheme"), match.group("host"), match.group("port")
    if scheme is not None and scheme.lower() not in ("http", "https"):
        return None
    if host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            return None
    elif len(host) > 253 or not all(DNS_LABEL.match(label) for label in host.split(".")):
        return None
    if port is not None and not 0 < int(port) < 65536:
        return None
    prefix = f"{scheme.lower()}://" if scheme else ""
    return f"{prefix}{host}{f':{int(port)}' if port else ''}"


def normalize_address(url: str) -> str:
    """`host[:port]`, optionally `http://` or `https://` first; anything else is refused."""
    address = parse_address(url)
    if address is None:
        raise BadRequest(
            "A registry URL is host[:port] (e.g. 10.0.0.5:5000), optionally with http:// or "
            "https:// in front; plain HTTP is used for loopback addresses or an explicit http://.",
            code=ErrorCode.INVALID_REGISTRY_URL,
            url=url[:300],
        )
    return address


def get_registry(session: Session, name: str) -> Registry:
    registry = queries.get_by_name(session, name)
    if registry is None:
        raise NotFound(
            f"No registry replica is called {name!r}.", code=ErrorCode.REGISTRY_NOT_FOUND
        )
    return registry


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name) or name in RESERVED_NAMES:
        raise BadRequest(
            "A registry name is 1-63 lowercase letters, digits, '.', '_' or '-' (not "
            "'proxy-config').",
            code=ErrorCode.INVALID_REGISTRY_NAME,
            name=name,
        )


def create_registry(session: Session, name: str, url: str, *, required: bool = True) -> Registry:
    check_name(name)
    if queries.get_by_name(session, name) is not None:
        raise Conflict(
            f"A registry replica called {name!r} exists.", code=ErrorCode.REGISTRY_EXISTS
        )
    address = normalize_address(url)
    _check_scheme(session, address, registry_id=None)
    registry = Registry(name=name, url=address, required=required, healthy=True)
    session.add(registry)
    session.flush()
    return registry


def update_registry(
    session: Session, name: str, *, url: str | None = None, required: bool | None = None
) -> Registry:
    registry = _changeable(get_registry(session, name))
    if url is not None:
        address = normalize_address(url)
        _check_scheme(session, address, registry_id=registry.id)
        registry.url = address
    if required is not None:
        registry.required = required
    session.flush()
    return registry


def _check_scheme(session: Session, address: str, *, registry_id: int | None) -> None:
    """The pull proxy reaches every replica with one scheme: a replica reached over http among
    replicas reached over https (or the reverse) would make its config impossible."""
    scheme = base_url(address).split("://", 1)[0]
    others = {
        base_url(other).split("://", 1)[0]
        for other in (r.url for r in queries.list_registries(session) if r.id != registry_id)
        if parse_address(other) is not None
    }
    if others and scheme not in others:
        raise Conflict(
            f"This replica would be reached over {scheme} and the others over "
            f"{others.pop()}; the pull proxy reaches every replica with one scheme (write "
            "http:// or https:// in front of the address to choose).",
            code=ErrorCode.REGISTRY_SCHEME_MISMATCH,
            url=address,
        )


def delete_registry(session: Session, name: str) -> None:
    session.delete(_changeable(get_registry(session, name)))
    session.flush()


def _changeable(registry: Registry) -> Registry:
    if registry.declared:
        raise Conflict(
            f"Registry replica {registry.name!r} is declared in the settings "
            "(CARTRIDGE_REGISTRIES or CARTRIDGE_REGISTRIES_FILE): change or remove it there.",
            code=ErrorCode.REGISTRY_DECLARED,
        )
    return registry


def ensure_default_registry(session: Session) -> None:
    """With no replica configured, the registry builds push to (`CARTRIDGE_REGISTRY_URL`) is the
    one replica, registered as `default` so that its presence and health are recorded too."""
    if queries.list_registries(session):
        return
    values = {
        "name": DEFAULT_REGISTRY_NAME,
        "url": normalize_address(get_settings().registry_url),
        "required": True,
        "healthy": True,
        "created_at": utcnow(),
    }
    session.execute(insert_for(session, Registry).values(**values).on_conflict_do_nothing())
    session.flush()


def check_health() -> dict[str, str | None]:
    """Probes every replica (`GET /v2/`) and records the result. Returns name -> error or None.
    Its own units of work: the replicas are read in one and the results recorded in another, so
    no transaction stays open while they are probed."""
    with session_scope() as session:
        replicas = [(r.id, r.name, r.url) for r in queries.list_registries(session)]
    timeout = get_settings().registry_connect_timeout_seconds
    errors = asyncio.run(probe({url for _, _, url in replicas}, timeout=timeout))
    now = utcnow()
    with session_scope() as session:
        for registry_id, _, url in replicas:
            queries.record_health(session, registry_id, errors[url], now)
    return {name: errors[url] for _, name, url in replicas}
