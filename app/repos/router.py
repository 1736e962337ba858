"""HTTP endpoints for registering, listing and configuring repositories."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AdminToken, AppSettings, DbSession, ReadAccess
from app.api.pagination import Page, decode_cursor, page_of, page_size
from app.api.responses import errors
from app.errors import ErrorCode
from app.reconcile import queries as reconciliations
from app.repos import queries, service
from app.repos.schemas import RepositoryCreate, RepositoryOut, RepositoryUpdate

router = APIRouter(tags=["repositories"])


@router.post("/repos", status_code=201, responses=errors(ErrorCode.REPOSITORY_EXISTS))
def register_repository(
    body: RepositoryCreate, session: DbSession, _token: AdminToken
) -> RepositoryOut:
    return RepositoryOut.of(service.register(session, body))


@router.get("/repos", responses=errors(ErrorCode.INVALID_LIMIT, ErrorCode.INVALID_CURSOR))
def list_repositories(
    session: DbSession,
    settings: AppSettings,
    _access: ReadAccess,
    cursor: str | None = None,
    limit: Annotated[int | None, Query()] = None,
) -> Page[RepositoryOut]:
    """Repositories in name order."""
    size = page_size(limit, settings)
    after = str(decode_cursor(cursor, str)) if cursor else None
    rows = queries.list_page(session, after=after, limit=size + 1)
    last = reconciliations.reconciliations_of(session, [row.id for row in rows])
    items = [RepositoryOut.of(row, last.get(row.id)) for row in rows]
    return page_of(items, size, lambda repo: repo.full_name)


@router.get("/repos/{owner}/{name}", responses=errors(ErrorCode.REPOSITORY_NOT_FOUND))
def get_repository(owner: str, name: str, session: DbSession, _access: ReadAccess) -> RepositoryOut:
    repository = service.get(session, f"{owner}/{name}")
    return RepositoryOut.of(repository, reconciliations.reconciliation_of(session, repository.id))


@router.patch("/repos/{owner}/{name}", responses=errors(ErrorCode.REPOSITORY_NOT_FOUND))
def configure_repository(
    owner: str, name: str, body: RepositoryUpdate, session: DbSession, _token: AdminToken
) -> RepositoryOut:
    repository = service.get(session, f"{owner}/{name}")
    configured = service.configure(session, repository, body)
    return RepositoryOut.of(configured, reconciliations.reconciliation_of(session, repository.id))
