"""The `auth:` section a replica's Distribution config needs to trust Cartridge's tokens."""

from __future__ import annotations

from app.config import Settings
from app.registry_auth.keys import key_paths


def distribution_auth_section(settings: Settings) -> str:
    """YAML for the replica's config.yml. `rootcertbundle` is the signing certificate: copy it
    to each replica host (the path here is where this host keeps it)."""
    _, certificate = key_paths(settings)
    return (
        "auth:\n"
        "  token:\n"
        f"    realm: {settings.registry_auth_realm_url}\n"
        f"    service: {settings.registry_auth_service}\n"
        f"    issuer: {settings.registry_auth_issuer}\n"
        f"    rootcertbundle: {certificate}\n"
    )
