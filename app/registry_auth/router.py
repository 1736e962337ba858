"""The token endpoint of Distribution's token auth (`docker login`, skopeo, the Docker engine)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response

from app.api.deps import DbSession
from app.api.responses import errors
from app.config import get_settings
from app.errors import ErrorCode, Unauthorized
from app.registry_auth import service

router = APIRouter(prefix="/auth", tags=["registry auth"])


@router.get(
    "/token",
    responses=errors(
        ErrorCode.UNKNOWN_SERVICE,
        ErrorCode.INVALID_SCOPE,
        ErrorCode.CREDENTIALS_REQUIRED,
        ErrorCode.INVALID_CREDENTIALS,
        ErrorCode.INVALID_TOKEN,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.REGISTRY_AUTH_OFF,
    ),
)
def registry_token(
    session: DbSession,
    service_name: Annotated[str | None, Query(alias="service")] = None,
    scope: Annotated[list[str] | None, Query(description="repository:<name>:<actions>")] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """A registry token for the asked repositories, holding the actions the caller may have
    (fewer than asked is not an error: the registry then refuses what is missing). Basic
    credentials: any user name, a Cartridge API token as the password."""
    settings = get_settings()
    try:
        issued = service.token_for(
            session,
            settings,
            authorization=authorization,
            service=service_name,
            scopes=scope or [],
        )
    except Unauthorized as exc:
        # Clients send credentials only after a challenge.
        return JSONResponse(
            exc.to_dict(),
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="Cartridge registry"'},
        )
    return JSONResponse(issued.answer(), headers={"Cache-Control": "no-store"})


@router.get(
    "/proxy",
    responses=errors(
        ErrorCode.CREDENTIALS_REQUIRED,
        ErrorCode.INVALID_CREDENTIALS,
        ErrorCode.INVALID_TOKEN,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.PULL_NOT_ALLOWED,
        ErrorCode.REGISTRY_AUTH_OFF,
    ),
)
def proxy_check(
    session: DbSession,
    x_original_uri: Annotated[str, Header()] = "/v2/",
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """The pull proxy's `auth_request`: 200 with `X-Registry-Token` (a pull token for the
    request's repository, which nginx forwards to the replica) or 401 with the challenge."""
    settings = get_settings()
    if not settings.registry_auth_enabled:
        raise service.RegistryAuthOff("Registry authentication is off.")
    try:
        token = service.check_pull(
            session, settings, authorization=authorization, original_uri=x_original_uri
        )
    except service.PullRefused as exc:
        return JSONResponse(
            exc.to_dict(), status_code=401, headers={"WWW-Authenticate": exc.challenge}
        )
    return Response(status_code=200, headers={"X-Registry-Token": token})
