"""`GET /auth/token`: who is asking (an API token, a worker grant or nobody) and what they get;
`GET /auth/proxy`: whether the pull proxy may serve a request (nginx `auth_request`)."""

from __future__ import annotations

import base64
import binascii
import threading
import time
from dataclasses import replace

import jwt
from sqlalchemy.orm import Session

from app.auth.service import authenticate
from app.config import Settings
from app.errors import BadRequest, ErrorCode, NotFound, Unauthorized
from app.models import TokenScope
from app.registry_auth.keys import signing_key
from app.registry_auth.tokens import (
    PULL,
    Access,
    IssuedToken,
    ScopeError,
    access_for_request,
    allowed_actions,
    decode,
    grant_access,
    issue,
    parse_scope,
)

# A token the realm signed is handed again, for this long, to whoever is granted exactly the same
# access: 50 hosts pulling with one API token then present one Authorization header to the pull
# proxy, which checks it once. Each request still authenticates its API token first.
REUSE_SECONDS = 20
REUSE_MAX_ENTRIES = 2048
_reusable: dict[tuple[str, ...], tuple[float, IssuedToken]] = {}
_reusable_lock = threading.Lock()


class RegistryAuthOff(NotFound):
    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.REGISTRY_AUTH_OFF)


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) of a Basic `Authorization` header; None when there is none."""
    if not authorization:
        return None
    kind, _, value = authorization.partition(" ")
    if kind.lower() != "basic":
        raise Unauthorized(
            "Send Basic credentials: any user name, an API token as the password.",
            code=ErrorCode.INVALID_CREDENTIALS,
        )
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized(
            "The Basic credentials are not valid base64.", code=ErrorCode.INVALID_CREDENTIALS
        ) from exc
    if not sep:
        raise Unauthorized(
            "The Basic credentials have no password.", code=ErrorCode.INVALID_CREDENTIALS
        )
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
            code=ErrorCode.UNKNOWN_SERVICE,
        )
    try:
        wanted = [parse_scope(s) for scope in scopes for s in scope.split(" ") if s]
    except ScopeError as exc:
        raise BadRequest(str(exc), code=ErrorCode.INVALID_SCOPE) from exc
    credentials = basic_credentials(authorization)
    if credentials is None:
        allowed = allowed_actions(None, anonymous_pull=settings.registry_auth_anonymous_pull)
        if not allowed:
            raise Unauthorized(
                "Registry access needs credentials: an API token as the password.",
                code=ErrorCode.CREDENTIALS_REQUIRED,
            )
        return _issue_reused(settings, "anonymous", [a.limited_to(allowed) for a in wanted])
    user, password = credentials
    grant = grant_access(settings, password)
    if grant is not None:
        granted = [a.limited_to(grant.get(a.name, ())) for a in wanted]
        return _issue_reused(settings, user or "cartridge-build", granted)
    token = authenticate(session, password)
    allowed = allowed_actions(TokenScope(token.scope), anonymous_pull=False)
    return _issue_reused(settings, f"token:{token.id}", [a.limited_to(allowed) for a in wanted])


def _issue_reused(settings: Settings, subject: str, access: list[Access]) -> IssuedToken:
    key = (
        str(signing_key(settings).certificate_path),
        settings.registry_auth_service,
        settings.registry_auth_issuer,
        subject,
        *(f"{a.name}:{','.join(a.actions)}" for a in access if a.actions),
    )
    now = time.monotonic()
    with _reusable_lock:
        cached = _reusable.get(key)
        if cached is not None and now - cached[0] < REUSE_SECONDS:
            elapsed = int(now - cached[0])
            return replace(cached[1], expires_in=cached[1].expires_in - elapsed)
    issued = issue(settings, subject, access)
    with _reusable_lock:
        if len(_reusable) >= REUSE_MAX_ENTRIES:
            _reusable.clear()
        _reusable[key] = (now, issued)
    return issued


class PullRefused(Unauthorized):
    """The proxy's answer to a pull it may not serve, with the challenge clients follow."""

    def __init__(
        self, message: str, challenge: str, *, code: ErrorCode = ErrorCode.CREDENTIALS_REQUIRED
    ) -> None:
        super().__init__(message, code=code)
        self.challenge = challenge


def challenge(settings: Settings, repository: str | None, error: str | None = None) -> str:
    """The `WWW-Authenticate` header that sends a client to the realm for a pull token."""
    parts = [
        f'realm="{settings.registry_auth_realm_url}"',
        f'service="{settings.registry_auth_service}"',
    ]
    if repository:
        parts.append(f'scope="repository:{repository}:pull"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


def check_pull(
    session: Session, settings: Settings, *, authorization: str | None, original_uri: str
) -> str:
    """Whether the proxy may serve `original_uri` to the holder of `authorization` (a registry
    token from the realm, Basic credentials with an API token, or nothing). Returns the pull
    token the proxy forwards upstream; raises PullRefused."""
    path = original_uri.split("?", 1)[0]
    wanted = access_for_request(path)
    repository = wanted[0].name if wanted else None
    if not path.startswith("/v2/"):
        raise PullRefused("Only /v2/ is served.", challenge(settings, None))
    if authorization and authorization.lower().startswith("bearer "):
        try:
            claims = decode(settings, authorization.split(" ", 1)[1].strip())
        except jwt.PyJWTError as exc:
            raise PullRefused(
                f"The registry token is not valid: {exc}",
                challenge(settings, repository, "invalid_token"),
                code=ErrorCode.INVALID_TOKEN,
            ) from exc
        if repository and not _grants_pull(claims, repository):
            raise PullRefused(
                f"The registry token does not allow pulling {repository}.",
                challenge(settings, repository, "insufficient_scope"),
                code=ErrorCode.PULL_NOT_ALLOWED,
            )
    else:
        try:
            credentials = basic_credentials(authorization)
        except Unauthorized as exc:
            raise PullRefused(exc.message, challenge(settings, repository)) from exc
        if credentials is None:
            if not settings.registry_auth_anonymous_pull:
                raise PullRefused(
                    "Pulls need credentials: `docker login` with an API token.",
                    challenge(settings, repository),
                    code=ErrorCode.CREDENTIALS_REQUIRED,
                )
        else:
            try:
                token = authenticate(session, credentials[1])
            except Unauthorized as exc:
                raise PullRefused(
                    exc.message, challenge(settings, repository), code=exc.code
                ) from exc
            if PULL not in allowed_actions(TokenScope(token.scope), anonymous_pull=False):
                raise PullRefused("This token may not pull.", challenge(settings, repository))
    upstream = [Access(repository, (PULL,))] if repository else []
    return issue(settings, "cartridge-proxy", upstream).token


def _grants_pull(claims: dict[str, object], repository: str) -> bool:
    entries = claims.get("access")
    if not isinstance(entries, list):
        return False
    return any(
        isinstance(e, dict)
        and e.get("type") == "repository"
        and e.get("name") == repository
        and PULL in (e.get("actions") or ())
        for e in entries
    )
