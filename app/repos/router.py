"""HTTP endpoints for registering, listing and configuring repositories."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AdminToken, AppSettings, DbSession, ReadAccess
from app.api.pagination import Page, decode_cursor, page_of, page_size
from app.repos import queries, service
from app.repos.schemas import RepositoryCreate, RepositoryOut, RepositoryUpdate

router = APIRouter(tags=["repositories"])


@router.post("/repos", status_code=201)
def register_repository(
    body: RepositoryCreate, session: DbSession, _token: AdminToken
) -> RepositoryOut:
    return RepositoryOut.of(service.register(session, body))


@router.get("/repos")
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
    return page_of([RepositoryOut.of(row) for row in rows], size, lambda repo: repo.full_name)


@router.get("/repos/{owner}/{name}")
def get_repository(owner: str, name: str, session: DbSession, _access: ReadAccess) -> RepositoryOut:
    return RepositoryOut.of(service.get(session, f"{owner}/{name}"))


@router.patch("/repos/{owner}/{name}")
def configure_repository(
    owner: str, name: str, body: RepositoryUpdate, session: DbSession, _token: AdminToken
) -> RepositoryOut:
    repository = service.get(session, f"{owner}/{name}")
    return RepositoryOut.of(service.configure(session, repository, body))
