"""Signing in to the web pages with an API token, and CSRF protection of their forms.

The session cookie holds the token's id, when it was issued and an HMAC over both and the
token's stored hash: never the token. Each request loads the token again, so revoking it signs
its sessions out at once. The cookie is http-only and same-site, and secure in production.

Every form carries a CSRF token: the HMAC of a random per-browser cookie. A cross-site page can
make the browser post, but cannot read the cookie to compute the field.

A second sign-in method (GitHub OAuth) would end the same way as `start_session`: it resolves to
an `ApiToken` row (one per GitHub user, created at first sign-in) and sets this cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from functools import lru_cache
from pathlib import Path

from fastapi import Request, Response
from sqlalchemy.orm import Session

from app.auth.service import token_allows
from app.config import Settings, get_settings
from app.models import ApiToken, TokenScope
from app.models.base import utcnow

SESSION_COOKIE = "cartridge_session"
CSRF_COOKIE = "cartridge_csrf"
CSRF_FIELD = "csrf_token"


def may_change_builds(token: ApiToken | None) -> bool:
    """Whether the signed-in token may retry and cancel builds: the `write` scope (or admin),
    decided by the same check as the API's."""
    return token_allows(token, TokenScope.WRITE)


def signed_in_token(request: Request, session: Session) -> ApiToken | None:
    value = request.cookies.get(SESSION_COOKIE, "")
    token_id, _, rest = value.partition(".")
    issued, _, signature = rest.partition(".")
    if not (token_id.isdigit() and issued.isdigit() and signature):
        return None
    settings = get_settings()
    if time.time() - int(issued) > settings.session_days * 86400:
        return None
    token = session.get(ApiToken, int(token_id))
    if token is None or token.revoked_at is not None or token.expired(utcnow()):
        return None
    expected = _sign(f"session:{token.id}:{issued}:{token.token_hash}")
    return token if hmac.compare_digest(expected, signature) else None


def start_session(response: Response, token: ApiToken) -> None:
    issued = str(int(time.time()))
    value = f"{token.id}.{issued}.{_sign(f'session:{token.id}:{issued}:{token.token_hash}')}"
    settings = get_settings()
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=settings.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=_secure(settings),
        path="/",
    )


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def csrf_secret(request: Request) -> tuple[str, bool]:
    """The browser's CSRF cookie value, and whether it is new (to be set on the response)."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if len(value) >= 32:
        return value, False
    return secrets.token_urlsafe(32), True


def csrf_token(secret: str) -> str:
    """The value forms carry for a browser whose CSRF cookie is `secret`."""
    return _sign(f"csrf:{secret}")


def set_csrf_cookie(response: Response, secret: str) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        secret,
        httponly=True,
        samesite="strict",
        secure=_secure(get_settings()),
        path="/",
    )


def csrf_valid(request: Request, submitted: str | None) -> bool:
    secret = request.cookies.get(CSRF_COOKIE, "")
    if len(secret) < 32 or not submitted:
        return False
    return hmac.compare_digest(csrf_token(secret), submitted)


def _secure(settings: Settings) -> bool:
    return settings.environment == "production"


def _sign(message: str) -> str:
    return hmac.new(_secret_key(), message.encode(), hashlib.sha256).hexdigest()


def _secret_key() -> bytes:
    configured = get_settings().session_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    return _generated_key(get_settings().state_dir)


@lru_cache
def _generated_key(state_dir: Path) -> bytes:
    """A random key kept in the state directory, so sessions survive a restart."""
    path = state_dir / "session.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes starting at once, one writes the key and both read it.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as key_file:
            key_file.write(secrets.token_hex(32))
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key.encode()
        time.sleep(0.01)  # the other process is still writing it
    raise RuntimeError(f"{path} is empty: remove it, or set CARTRIDGE_SESSION_SECRET")
