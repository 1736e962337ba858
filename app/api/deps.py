"""Request-scoped dependencies: the unit of work and access control."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.auth.service import authenticate
from app.config import Settings, get_settings
from app.db import get_session_factory
from app.errors import Unauthorized
from app.models import ApiToken


def _session() -> Iterator[Session]:
    # scope="function" below: the commit happens before the response is sent, so a 2xx always
    # means the rows are durable.
    session = get_session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(_session, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def require_token(request: Request, session: DbSession) -> ApiToken:
    raw = _bearer(request)
    if raw is None:
        raise Unauthorized("This endpoint needs an 'Authorization: Bearer <token>' header.")
    return authenticate(session, raw)


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
            return token
    return require_token(request, session)


WriteToken = Annotated[ApiToken, Depends(require_token)]
ReadAccess = Annotated[ApiToken | None, Depends(read_access)]
