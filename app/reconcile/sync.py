"""Reconciling one repository on request (the API's sync endpoint)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.db import get_session_factory
from app.errors import BadGateway, Conflict, ErrorCode, NotFound, ServiceUnavailable
from app.github.client import get_github_client
from app.github.errors import GitHubError, RateLimited
from app.models import ReconcileOutcome
from app.models.base import utcnow
from app.reconcile import queries
from app.reconcile.service import RepositoryResult, reconcile_repository
from app.statuses.queries import rate_limit_pause


def sync_now(repository_id: int) -> RepositoryResult:
    """Raises `Conflict` without GitHub credentials, `ServiceUnavailable` while GitHub asks to
    wait, and `BadGateway` when GitHub refused or failed (the result is recorded all the same)."""
    try:
        client = get_github_client()
    except GitHubError as exc:
        raise Conflict(exc.reason, code=ErrorCode.GITHUB_NOT_CONFIGURED) from exc
    sessions = get_session_factory()
    with sessions() as session, session.begin():
        now = utcnow()
        pause = queries.rate_limited_until(session, now) or rate_limit_pause(session, now)
    if pause is not None:
        raise _rate_limited(pause.isoformat())
    try:
        result = reconcile_repository(sessions, client, repository_id)
    except LookupError as exc:  # removed since the request looked it up
        raise NotFound(
            "The repository was removed meanwhile.", code=ErrorCode.REPOSITORY_NOT_FOUND
        ) from exc
    except RateLimited as exc:
        raise _rate_limited(datetime.fromtimestamp(exc.retry_at, UTC).isoformat()) from exc
    if result.outcome is ReconcileOutcome.FAILED:
        raise BadGateway(
            f"GitHub did not list the branches: {result.error}",
            code=ErrorCode.GITHUB_FAILED,
            repository=result.full_name,
        )
    return result


def _rate_limited(retry_at: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        "GitHub asked Cartridge to wait before its next request; try again later.",
        code=ErrorCode.GITHUB_RATE_LIMITED,
        retry_at=retry_at,
    )
