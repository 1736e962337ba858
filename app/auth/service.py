"""API tokens: created once, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ErrorCode, Unauthorized
from app.models import ApiToken
from app.models.base import utcnow

TOKEN_PREFIX = "ctg_"  # noqa: S105 (a prefix, not a secret)
LAST_USED_PRECISION = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(session: Session, name: str) -> tuple[ApiToken, str]:
    """Returns the row and the clear token, which is never available again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_hash=hash_token(raw), prefix=raw[:10])
    session.add(token)
    session.flush()
    return token, raw


def authenticate(session: Session, raw: str) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(raw)))
    if token is None or token.revoked_at is not None:
        raise Unauthorized("The bearer token is unknown or revoked.", code=ErrorCode.INVALID_TOKEN)
    now = utcnow()
    # Recording every use would turn each read into a write; a minute's precision is enough.
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        token.last_used_at = now
    return token


def revoke_token(session: Session, token_id: int) -> bool:
    token = session.get(ApiToken, token_id)
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    return True
