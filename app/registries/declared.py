"""Replicas declared in the settings (`CARTRIDGE_REGISTRIES`, `CARTRIDGE_REGISTRIES_FILE`), so a
deployment such as docker-compose.yml needs no API call before its first build.

Declared replicas are registered (or brought in line with the settings) by `cartridge db upgrade`,
at the API's start and by every registry health pass. The API refuses to change or remove them: the
settings are where they are changed. A replica that is no longer declared stays registered, as one
the API manages, so that its image records survive until an operator removes it.
"""

from __future__ import annotations

import json

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import DeclaredRegistry, Settings
from app.errors import BadRequest
from app.models import Registry
from app.registries.service import check_name, normalize_address

_DECLARED_LIST = TypeAdapter(list[DeclaredRegistry])


def declared_registries(settings: Settings) -> list[DeclaredRegistry]:
    """The replicas the settings declare, inline first, then those of the file."""
    declared = list(settings.registries)
    if settings.registries_file is not None:
        try:
            declared += _DECLARED_LIST.validate_json(settings.registries_file.read_bytes())
        except (OSError, ValidationError, json.JSONDecodeError) as exc:
            raise BadRequest(
                f"CARTRIDGE_REGISTRIES_FILE ({settings.registries_file}) is not a JSON list of "
                f'{{"name": ..., "url": ..., "required": ...}}: {exc}',
                code="invalid_declared_registries",
            ) from exc
    names = [entry.name for entry in declared]
    if len(set(names)) != len(names):
        raise BadRequest(
            "A registry name is declared twice in the settings.",
            code="invalid_declared_registries",
            names=names,
        )
    return declared


def sync_declared(session: Session, settings: Settings) -> list[str]:
    """Registers the declared replicas and updates changed ones; returns the names it changed.
    Only flushes."""
    declared = {entry.name: entry for entry in declared_registries(settings)}
    changed: list[str] = []
    existing = {r.name: r for r in session.scalars(select(Registry))}
    for name, entry in declared.items():
        check_name(name)
        url = normalize_address(entry.url)
        registry = existing.get(name)
        if registry is None:
            session.add(Registry(name=name, url=url, required=entry.required, declared=True))
            changed.append(name)
        elif (registry.url, registry.required, registry.declared) != (url, entry.required, True):
            registry.url, registry.required, registry.declared = url, entry.required, True
            changed.append(name)
    for name, registry in existing.items():
        if registry.declared and name not in declared:
            registry.declared = False
            changed.append(name)
    session.flush()
    return changed
