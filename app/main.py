"""The FastAPI application: routers, error rendering, start-up checks."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from app.api.errors import install_error_handlers
from app.api.responses import document_errors
from app.auth.router import router as tokens_router
from app.builds.router import router as builds_router
from app.config import Settings, get_settings
from app.db import session_scope
from app.events.router import router as events_router
from app.health.metrics import install_metrics
from app.health.router import router as health_router
from app.images.router import router as images_router
from app.logs import RequestIdMiddleware, configure_logging
from app.reconcile.router import router as reconcile_router
from app.registries.declared import sync_declared
from app.registries.router import proxies_router
from app.registries.router import router as registries_router
from app.registry_auth.router import router as registry_auth_router
from app.repos.router import router as repos_router
from app.statuses.router import router as github_router
from app.web.router import mount_static
from app.web.router import router as web_router
from app.webhooks.router import router as webhooks_router

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings)
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
    routers = (
        repos_router,
        reconcile_router,
        builds_router,
        images_router,
        registries_router,
        proxies_router,
    )
    for router in (*routers, tokens_router, events_router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(github_router, prefix=API_PREFIX)
    _register_declared_registries(settings)
    # The web pages, under `/`; the API stays under /api/v1.
    app.include_router(web_router)
    mount_static(app)
    install_error_handlers(app)
    install_metrics(app)
    app.add_middleware(RequestIdMiddleware)
    document_errors(app)
    return app


def _register_declared_registries(settings: Settings) -> None:
    # The database may still be down while the API starts: /readyz says so, and the next
    # registry health pass registers them instead.
    try:
        with session_scope() as session:
            sync_declared(session, settings)
    except SQLAlchemyError as exc:
        log.warning("declared registries not registered yet: %s", exc)
