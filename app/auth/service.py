"""API tokens: created once, shown once, stored as a SHA-256 hash; scoped, expiring, revocable.

Every request looks its token up again, so a revocation or an expiry applies to the very next
request, on every API process.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Forbidden, NotFound, Unauthorized
from app.models import ApiToken, TokenScope
from app.models.base import utcnow

TOKEN_PREFIX = "ctg_"  # noqa: S105 (a prefix, not a secret)
LAST_USED_PRECISION = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(
    session: Session,
    name: str,
    scope: TokenScope = TokenScope.WRITE,
    *,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Returns the row and the clear token, which is never available again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        token_hash=hash_token(raw),
        prefix=raw[:10],
        scope=TokenScope(scope),
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    return token, raw


def authenticate(session: Session, raw: str) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(raw)))
    if token is None or token.revoked_at is not None:
        raise Unauthorized("The bearer token is unknown or revoked.", code="invalid_token")
    now = utcnow()
    if token.expired(now):
        raise Unauthorized("The bearer token has expired.", code="token_expired")
    # Recording every use would turn each read into a write; a minute's precision is enough.
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        token.last_used_at = now
    return token


def token_allows(token: ApiToken | None, scope: TokenScope) -> bool:
    """Whether `token` (None: no token) may do what `scope` covers. The one scope check: the API's
    dependencies and the web pages both use it."""
    return token is not None and TokenScope(token.scope).includes(scope)


def require_scope(token: ApiToken, scope: TokenScope) -> ApiToken:
    if not token_allows(token, scope):
        raise Forbidden(
            f"This needs a token with the {scope.value} scope; token {token.id} "
            f"({token.name}) has {TokenScope(token.scope).value}.",
            code="insufficient_scope",
            required_scope=scope.value,
            token_scope=TokenScope(token.scope).value,
        )
    return token


def list_tokens(session: Session, *, include_revoked: bool = False) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(query))


def get_token(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"There is no token {token_id}.", code="token_not_found", token_id=token_id)
    return token


def revoke_token(session: Session, token_id: int) -> ApiToken:
    """Revokes the token (again is a no-op) and returns it; it stops working at once."""
    token = get_token(session, token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
    return token
