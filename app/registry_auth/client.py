"""Cartridge's own registry clients (copier, health probe, deleter, the worker's manifest check)
sign their registry tokens in-process instead of asking the realm over HTTP.

`registry_client_auth()` is None while registry auth is off, so the same clients keep talking
to open replicas unchanged. The token for each request is chosen from its path before it is
sent (a streamed upload body cannot be replayed after a 401) and reused until shortly before it
expires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import httpx

from app.config import Settings, get_settings
from app.registry_auth.tokens import Access, access_for_request, issue

SUBJECT = "cartridge"
# A token is replaced when it has less than this left: a request may take a while to arrive.
RENEW_BEFORE_SECONDS = 30


class RegistryTokenAuth(httpx.Auth):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        access = access_for_request(request.url.path, request.url.params.get("from"))
        key = tuple(f"{a.name}:{','.join(a.actions)}" for a in access)
        request.headers["Authorization"] = f"Bearer {self.token(key, access)}"
        yield request

    def token(self, key: tuple[str, ...], access: list[Access]) -> str:
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached[1] - RENEW_BEFORE_SECONDS > now:
                return cached[0]
            issued = issue(self.settings, SUBJECT, access)
            self._tokens[key] = (issued.token, now + issued.expires_in)
            return issued.token


def registry_client_auth(settings: Settings | None = None) -> RegistryTokenAuth | None:
    settings = settings or get_settings()
    return RegistryTokenAuth(settings) if settings.registry_auth_enabled else None
