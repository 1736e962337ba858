"""Credentials for GitHub's REST API: a fixed token, or a GitHub App installation token.

An installation token lives an hour; it is fetched with a short-lived RS256 JWT signed by the
App's private key and reused by every request of this process until shortly before it expires.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Protocol

import httpx
import jwt

from app.github.errors import PermanentGitHubError, TransientGitHubError, error_for

# GitHub refuses App JWTs valid for more than ten minutes or issued "in the future".
JWT_LIFETIME_SECONDS = 540
JWT_BACKDATE_SECONDS = 60


class Auth(Protocol):
    def authorization(self, http: httpx.Client) -> str:
        """The value of the Authorization header for the next request."""

    def invalidate(self) -> bool:
        """Forgets a credential GitHub refused; returns whether a fresh one may be obtained."""


class TokenAuth:
    def __init__(self, token: str) -> None:
        self._token = token

    def authorization(self, http: httpx.Client) -> str:
        return f"Bearer {self._token}"

    def invalidate(self) -> bool:
        return False


class AppInstallationAuth:
    def __init__(
        self,
        app_id: str,
        installation_id: str,
        private_key: str,
        *,
        refresh_before_expiry_seconds: float = 300.0,
    ) -> None:
        self.app_id = app_id
        self.installation_id = installation_id
        self._private_key = private_key
        self._refresh_before = refresh_before_expiry_seconds
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def authorization(self, http: httpx.Client) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._expires_at - self._refresh_before:
                self._token, self._expires_at = self._fetch(http)
            return f"Bearer {self._token}"

    def invalidate(self) -> bool:
        with self._lock:
            self._token = None
        return True

    def app_jwt(self) -> str:
        now = int(time.time())
        claims = {
            "iat": now - JWT_BACKDATE_SECONDS,
            "exp": now + JWT_LIFETIME_SECONDS,
            "iss": self.app_id,
        }
        try:
            return jwt.encode(claims, self._private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            # The exception text never includes the key itself.
            raise PermanentGitHubError(
                f"the GitHub App private key is not a usable RSA key ({type(exc).__name__})"
            ) from exc

    def _fetch(self, http: httpx.Client) -> tuple[str, float]:
        path = f"/app/installations/{self.installation_id}/access_tokens"
        try:
            response = http.post(path, headers={"Authorization": f"Bearer {self.app_jwt()}"})
        except httpx.TimeoutException as exc:
            raise TransientGitHubError(f"installation token request timed out ({exc})") from exc
        except httpx.TransportError as exc:
            raise TransientGitHubError(f"installation token request failed ({exc})") from exc
        if not response.is_success:
            error = error_for(response)
            error.reason = f"installation token: {error.reason}"
            raise error
        try:
            body = response.json()
            token = str(body["token"])
            expires_at = datetime.fromisoformat(body["expires_at"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TransientGitHubError("installation token answer is malformed") from exc
        return token, expires_at.timestamp()
