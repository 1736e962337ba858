"""`GET /auth/token`: who is asking (an API token, a worker grant or nobody) and what they get."""

from __future__ import annotations

import base64
import binascii

from sqlalchemy.orm import Session

from app.auth.service import authenticate
from app.config import Settings
from app.errors import BadRequest, NotFound, Unauthorized
from app.models import TokenScope
from app.registry_auth.tokens import (
    IssuedToken,
    ScopeError,
    allowed_actions,
    grant_access,
    issue,
    parse_scope,
)


class RegistryAuthOff(NotFound):
    code = "registry_auth_off"


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) of a Basic `Authorization` header; None when there is none."""
    if not authorization:
        return None
    kind, _, value = authorization.partition(" ")
    if kind.lower() != "basic":
        raise Unauthorized("Send Basic credentials: any user name, an API token as the password.")
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("The Basic credentials are not valid base64.") from exc
    if not sep:
        raise Unauthorized("The Basic credentials have no password.")
    return user, password


def token_for(
    session: Session,
    settings: Settings,
    *,
    authorization: str | None,
    service: str | None,
    scopes: list[str],
) -> IssuedToken:
    if not settings.registry_auth_enabled:
        raise RegistryAuthOff("Registry authentication is off (CARTRIDGE_REGISTRY_AUTH=none).")
    if service and service != settings.registry_auth_service:
        raise BadRequest(
            f"This realm issues tokens for {settings.registry_auth_service!r}, not {service!r}.",
            code="unknown_service",
        )
    try:
        wanted = [parse_scope(s) for scope in scopes for s in scope.split(" ") if s]
    except ScopeError as exc:
        raise BadRequest(str(exc), code="invalid_scope") from exc
    credentials = basic_credentials(authorization)
    if credentials is None:
        allowed = allowed_actions(None, anonymous_pull=settings.registry_auth_anonymous_pull)
        if not allowed:
            raise Unauthorized(
                "Registry access needs credentials: an API token as the password.",
                code="credentials_required",
            )
        return issue(settings, "anonymous", [a.limited_to(allowed) for a in wanted])
    user, password = credentials
    grant = grant_access(settings, password)
    if grant is not None:
        granted = [a.limited_to(grant.get(a.name, ())) for a in wanted]
        return issue(settings, user or "cartridge-build", granted)
    token = authenticate(session, password)
    allowed = allowed_actions(TokenScope(token.scope), anonymous_pull=False)
    return issue(settings, f"token:{token.id}", [a.limited_to(allowed) for a in wanted])
