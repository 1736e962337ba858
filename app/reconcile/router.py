"""`POST /api/v1/repos/{owner}/{name}/sync`: reconcile one repository now (HTTP only)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import DbSession, WriteToken
from app.api.responses import errors
from app.errors import ErrorCode
from app.reconcile import sync
from app.reconcile.schemas import ReconciliationOut
from app.repos import service as repos

router = APIRouter(tags=["repositories"])


@router.post(
    "/repos/{owner}/{name}/sync",
    responses=errors(
        ErrorCode.REPOSITORY_NOT_FOUND,
        ErrorCode.GITHUB_FAILED,
        ErrorCode.GITHUB_NOT_CONFIGURED,
        ErrorCode.GITHUB_RATE_LIMITED,
    ),
)
def sync_repository(
    owner: str, name: str, session: DbSession, _token: WriteToken
) -> ReconciliationOut:
    """Compares the repository's branch heads with GitHub's now, records the pushes and
    deletions no webhook told of (their builds queued as for a webhook), and answers what it
    found."""
    repository_id = repos.get(session, f"{owner}/{name}").id
    # The request's transaction ends before GitHub is asked: none stays open across it.
    session.commit()
    return ReconciliationOut.of(sync.sync_now(repository_id))
