"""Registry tokens: the JWTs Distribution's token auth accepts, what each caller may be granted,
and the signed grants Cartridge hands its own build worker.

What an API token may do on the replicas follows its scope:

    read  -> pull
    write -> pull   (writing to the API is not writing images: only Cartridge's builds push)
    admin -> pull, push, delete

Cartridge's own registry clients (copier, health probe, deleter) sign their tokens in-process and
may do everything. The build worker's Docker engine asks the realm itself, so the worker gives it
a *grant*: a short-lived JWT of Cartridge's that names the one repository it may push to, used as
the password of the Basic credentials the engine sends to `/auth/token`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import jwt

from app.config import Settings
from app.models import TokenScope
from app.registry_auth.keys import ALGORITHM, signing_key

PULL, PUSH, DELETE = "pull", "push", "delete"
ALL_ACTIONS = (PULL, PUSH, DELETE)
SCOPE_ACTIONS: dict[TokenScope, tuple[str, ...]] = {
    TokenScope.READ: (PULL,),
    TokenScope.WRITE: (PULL,),
    TokenScope.ADMIN: ALL_ACTIONS,
}
GRANT_AUDIENCE = "cartridge-registry-grant"
GRANT_PREFIX = "ctgrant."
# Distribution's repository name grammar (lower-case path components, separators inside).
REPOSITORY_NAME = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
# A registry path that names a repository: manifests, blobs, uploads, tags.
REPOSITORY_PATH = re.compile(
    r"^/v2/(?P<name>.+)/(?:manifests/[^/]+|blobs/uploads/[^/]*|blobs/[^/]+|tags/list)$"
)


class ScopeError(ValueError):
    """A `scope` parameter that is not `repository:<name>:<actions>`."""


@dataclass(frozen=True)
class Access:
    """One entry of a token's `access` claim: a repository and the actions on it."""

    name: str
    actions: tuple[str, ...]
    type: str = "repository"

    def claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}

    def limited_to(self, allowed: tuple[str, ...]) -> Access:
        return Access(self.name, tuple(a for a in self.actions if a in allowed), self.type)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: datetime
    access: list[Access] = field(default_factory=list)

    def answer(self) -> dict[str, object]:
        """The token spec's answer (`token`, and `access_token` for OAuth2 clients)."""
        return {
            "token": self.token,
            "access_token": self.token,
            "expires_in": self.expires_in,
            "issued_at": self.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def parse_scope(scope: str) -> Access:
    """`repository:octo/app:pull,push` -> Access. Unknown actions are dropped (the spec lets a
    server grant less than asked); other resource types are refused."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind != "repository" or not name or not actions:
        raise ScopeError(f"scope {scope!r} is not repository:<name>:<actions>")
    if not REPOSITORY_NAME.match(name):
        raise ScopeError(f"scope {scope!r} names no valid repository")
    wanted = {a.strip() for a in actions.split(",")}
    if "*" in wanted:
        wanted = set(ALL_ACTIONS)
    return Access(name, tuple(a for a in ALL_ACTIONS if a in wanted))


def allowed_actions(scope: TokenScope | None, *, anonymous_pull: bool) -> tuple[str, ...]:
    """What a caller with an API token of `scope` (None: no credentials) may do on any
    repository."""
    if scope is None:
        return (PULL,) if anonymous_pull else ()
    return SCOPE_ACTIONS[TokenScope(scope)]


def issue(
    settings: Settings, subject: str, access: list[Access], *, seconds: int | None = None
) -> IssuedToken:
    """Signs a registry token for `subject`; entries left with no action are omitted."""
    key = signing_key(settings)
    seconds = seconds or settings.registry_auth_token_seconds
    now = datetime.now(UTC).replace(microsecond=0)
    granted = [a for a in access if a.actions]
    claims = {
        "iss": settings.registry_auth_issuer,
        "sub": subject,
        "aud": settings.registry_auth_service,
        "iat": int(now.timestamp()),
        # A little slack for clocks that are not quite in step.
        "nbf": int(now.timestamp()) - 30,
        "exp": int(now.timestamp()) + seconds,
        "jti": uuid.uuid4().hex,
        "access": [a.claim() for a in granted],
    }
    token = jwt.encode(
        claims, key.private_key, algorithm=ALGORITHM, headers={"x5c": key.x5c, "typ": "JWT"}
    )
    return IssuedToken(token, seconds, now, granted)


def decode(settings: Settings, token: str, *, audience: str | None = None) -> dict[str, object]:
    """Verifies a token of Cartridge's own (signature, expiry, issuer, audience)."""
    key = signing_key(settings)
    claims: dict[str, object] = jwt.decode(
        token,
        key.public_key,
        algorithms=[ALGORITHM],
        audience=audience or settings.registry_auth_service,
        issuer=settings.registry_auth_issuer,
    )
    return claims


def access_for_request(path: str, mount_from: str | None = None) -> list[Access]:
    """What Cartridge's own client needs for one registry request: every action on the
    repository the path names (and pull on the repository a blob is mounted from)."""
    match = REPOSITORY_PATH.match(path)
    if match is None:
        return []
    access = [Access(match["name"], ALL_ACTIONS)]
    if mount_from and mount_from != match["name"]:
        access.append(Access(mount_from, (PULL,)))
    return access


def worker_grant(settings: Settings, repository: str, *, seconds: int) -> str:
    """The password the build worker gives its Docker engine for pushing `repository`: valid at
    the realm only, for pull and push on that one repository, for `seconds`."""
    key = signing_key(settings)
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": settings.registry_auth_issuer,
        "sub": "cartridge-build",
        "aud": GRANT_AUDIENCE,
        "iat": now,
        "exp": now + seconds,
        "access": [Access(repository, (PULL, PUSH)).claim()],
    }
    return GRANT_PREFIX + jwt.encode(claims, key.private_key, algorithm=ALGORITHM)


def grant_access(settings: Settings, password: str) -> dict[str, tuple[str, ...]] | None:
    """Repository -> actions a worker grant allows, or None when `password` is no valid grant."""
    if not password.startswith(GRANT_PREFIX):
        return None
    try:
        claims = decode(settings, password[len(GRANT_PREFIX) :], audience=GRANT_AUDIENCE)
    except jwt.PyJWTError:
        return None
    entries = claims.get("access")
    if not isinstance(entries, list):
        return None
    return {str(e["name"]): tuple(e["actions"]) for e in entries if isinstance(e, dict)}
