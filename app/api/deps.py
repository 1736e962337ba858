"""Request-scoped dependencies: the unit of work and access control (token scopes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.auth.service import authenticate, require_scope
from app.config import Settings, get_settings
from app.db import session_scope
from app.errors import ErrorCode, Unauthorized, raises
from app.models import ApiToken, TokenScope


@raises(ErrorCode.DATABASE_UNAVAILABLE)
def _session() -> Iterator[Session]:
    # scope="function" below: the commit happens before the response is sent, so a 2xx always
    # means the rows are durable.
    with session_scope() as session:
        yield session


DbSession = Annotated[Session, Depends(_session, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


TOKEN_ERRORS = (ErrorCode.UNAUTHORIZED, ErrorCode.INVALID_TOKEN, ErrorCode.TOKEN_EXPIRED)


@raises(*TOKEN_ERRORS)
def require_token(request: Request, session: DbSession) -> ApiToken:
    raw = _bearer(request)
    if raw is None:
        raise Unauthorized(
            "This endpoint needs an 'Authorization: Bearer <token>' header.",
            code=ErrorCode.UNAUTHORIZED,
        )
    return authenticate(session, raw)


class RequireScope:
    """A dependency: a valid token whose scope includes `scope` (401 without one, 403 when the
    scope is too narrow)."""

    def __init__(self, scope: TokenScope) -> None:
        self.scope = scope
        # Read by app.api.responses, as `@raises` marks a function.
        self.error_codes = (*TOKEN_ERRORS, ErrorCode.INSUFFICIENT_SCOPE)

    def __call__(self, request: Request, session: DbSession) -> ApiToken:
        return require_scope(require_token(request, session), self.scope)


@raises(*TOKEN_ERRORS)
def read_access(request: Request, session: DbSession, settings: AppSettings) -> ApiToken | None:
    if not settings.read_requires_token:
        return None
    if _bearer(request) is None:
        # The web pages' own reads (the live log, the event stream: EventSource sends no
        # headers) come with the browser's session. Only reads: writes need the bearer token,
        # which a cross-site form cannot send.
        from app.web.auth import signed_in_token

        token = signed_in_token(request, session)
        if token is not None:
            return require_scope(token, TokenScope.READ)
    return require_scope(require_token(request, session), TokenScope.READ)


# Retry, cancel, sync: a token with the write scope (or admin).
WriteToken = Annotated[ApiToken, Depends(RequireScope(TokenScope.WRITE))]
# Repositories, registries, tokens.
AdminToken = Annotated[ApiToken, Depends(RequireScope(TokenScope.ADMIN))]
ReadAccess = Annotated[ApiToken | None, Depends(read_access)]
