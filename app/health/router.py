"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import AppSettings
from app.api.responses import errors
from app.engine import get_engine
from app.errors import ErrorCode, ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=errors(ErrorCode.DATABASE_UNAVAILABLE))
def readyz(settings: AppSettings) -> dict[str, str | list[str]]:
    """Ready when the database answers; `warnings` lists settings allowed but unsafe (e.g.
    reads without a token in production)."""
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise ServiceUnavailable(
            "The database is unreachable.",
            code=ErrorCode.DATABASE_UNAVAILABLE,
            reason=type(exc).__name__,
        ) from exc
    return {"status": "ready", "database": "ok", "warnings": settings.security_warnings()}
