"""The FastAPI application: routers, error rendering, start-up checks."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app.auth.router import router as tokens_router
from app.builds.router import router as builds_router
from app.config import Settings, get_settings
from app.db import session_scope
from app.errors import CartridgeError, ServiceUnavailable
from app.health.metrics import install_metrics
from app.health.router import router as health_router
from app.images.router import router as images_router
from app.registries.declared import sync_declared
from app.registries.router import proxies_router
from app.registries.router import router as registries_router
from app.registry_auth.router import router as registry_auth_router
from app.repos.router import router as repos_router
from app.statuses.router import router as github_router
from app.webhooks.router import router as webhooks_router

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


def create_app() -> FastAPI:
    settings = get_settings()
    settings.check()
    for warning in settings.security_warnings():
        log.warning("security: %s", warning)
    app = FastAPI(
        title="Cartridge",
        version="0.1.0",
        description="Turns GitHub pushes into ready-to-run container images.",
    )
    app.include_router(health_router)
    app.include_router(webhooks_router)
    app.include_router(registry_auth_router)
    routers = (repos_router, builds_router, images_router, registries_router, proxies_router)
    for router in (*routers, tokens_router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(github_router, prefix=API_PREFIX)
    _register_declared_registries(settings)
    install_metrics(app)
    _install_error_handlers(app)
    return app


def _register_declared_registries(settings: Settings) -> None:
    # The database may still be down while the API starts: /readyz says so, and the next
    # registry health pass registers them instead.
    try:
        with session_scope() as session:
            sync_declared(session, settings)
    except SQLAlchemyError as exc:
        log.warning("declared registries not registered yet: %s", exc)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CartridgeError)
    async def domain_error(_request: Request, exc: CartridgeError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        body = {
            "error": {
                "code": "validation_error",
                "message": "The request is not valid.",
                "details": {"errors": _plain_errors(exc)},
            }
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(OperationalError)
    async def database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc.orig)
        error = ServiceUnavailable(
            "The database is unreachable; try again shortly.", code="database_unavailable"
        )
        return JSONResponse(error.to_dict(), status_code=error.status_code)


def _plain_errors(exc: RequestValidationError) -> list[dict[str, object]]:
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
