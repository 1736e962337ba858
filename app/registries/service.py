"""Registry replicas: configuration rules, health, and how images are named on them."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import insert_for
from app.errors import BadRequest, Conflict, NotFound
from app.models import Registry
from app.models.base import utcnow
from app.registries import queries
from app.registries.copier import probe

DEFAULT_REGISTRY_NAME = "default"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# Only what nginx and Docker accept as an upstream address: the address ends up verbatim in the
# generated proxy config, so nothing else (spaces, `;`, braces) may get through.
ADDRESS_PATTERN = re.compile(
    r"^(?:(?P<scheme>https?)://)?"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?/?$"
)


def normalize_address(url: str) -> str:
    """`host[:port]`, optionally `http://` or `https://` first; anything else is refused."""
    match = ADDRESS_PATTERN.match(url.strip())
    port = match and match.group("port")
    if not match or (port and not 0 < int(port) < 65536):
        raise BadRequest(
            "A registry URL is host[:port] (e.g. 10.0.0.5:5000), optionally with http:// or "
            "https:// in front; plain HTTP is used for loopback addresses or an explicit http://.",
            code="invalid_registry_url",
            url=url,
        )
    return url.strip().rstrip("/")


def get_registry(session: Session, name: str) -> Registry:
    registry = queries.get_by_name(session, name)
    if registry is None:
        raise NotFound(f"No registry replica is called {name!r}.", code="registry_not_found")
    return registry


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise BadRequest(
            "A registry name is 1-63 lowercase letters, digits, '.', '_' or '-'.",
            code="invalid_registry_name",
            name=name,
        )


def create_registry(session: Session, name: str, url: str, *, required: bool = True) -> Registry:
    check_name(name)
    if queries.get_by_name(session, name) is not None:
        raise Conflict(f"A registry replica called {name!r} exists.", code="registry_exists")
    registry = Registry(name=name, url=normalize_address(url), required=required, healthy=True)
    session.add(registry)
    session.flush()
    return registry


def update_registry(
    session: Session, name: str, *, url: str | None = None, required: bool | None = None
) -> Registry:
    registry = _changeable(get_registry(session, name))
    if url is not None:
        registry.url = normalize_address(url)
    if required is not None:
        registry.required = required
    session.flush()
    return registry


def delete_registry(session: Session, name: str) -> None:
    session.delete(_changeable(get_registry(session, name)))
    session.flush()


def _changeable(registry: Registry) -> Registry:
    if registry.declared:
        raise Conflict(
            f"Registry replica {registry.name!r} is declared in the settings "
            "(CARTRIDGE_REGISTRIES or CARTRIDGE_REGISTRIES_FILE): change or remove it there.",
            code="registry_declared",
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


def check_health(session: Session) -> dict[str, str | None]:
    """Probes every replica (`GET /v2/`) and records the result. Returns name -> error or None."""
    settings = get_settings()
    registries = queries.list_registries(session)
    errors = asyncio.run(
        probe({r.url for r in registries}, timeout=settings.registry_connect_timeout_seconds)
    )
    now = utcnow()
    for registry in registries:
        queries.record_health(session, registry.id, errors[registry.url], now)
    session.expire_all()
    return {r.name: errors[r.url] for r in registries}
