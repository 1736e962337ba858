"""Request-scoped dependencies: the unit of work and access control."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.auth.service import authenticate
from app.config import Settings, get_settings
from app.db import get_session_factory
from app.errors import ErrorCode, Unauthorized, raises
from app.models import ApiToken


@raises(ErrorCode.DATABASE_UNAVAILABLE)
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


@raises(ErrorCode.UNAUTHORIZED, ErrorCode.INVALID_TOKEN)
def require_token(request: Request, session: DbSession) -> ApiToken:
    raw = _bearer(request)
    if raw is None:
        raise Unauthorized(
            "This endpoint needs an 'Authorization: Bearer <token>' header.",
            code=ErrorCode.UNAUTHORIZED,
        )
    return authenticate(session, raw)


@raises(ErrorCode.UNAUTHORIZED, ErrorCode.INVALID_TOKEN)
def read_access(request: Request, session: DbSession, settings: AppSettings) -> ApiToken | None:
    if not settings.read_requires_token:
        return None
    return require_token(request, session)


WriteToken = Annotated[ApiToken, Depends(require_token)]
ReadAccess = Annotated[ApiToken | None, Depends(read_access)]
