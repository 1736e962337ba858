"""HTTP: the commit status history of a build."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import DbSession, ReadAccess
from app.errors import NotFound
from app.models import Build
from app.statuses import queries
from app.statuses.schemas import BuildStatusesOut, StatusPostOut

router = APIRouter(tags=["statuses"])


@router.get("/builds/{build_id}/statuses", response_model=BuildStatusesOut)
def build_statuses(build_id: int, session: DbSession, _access: ReadAccess) -> BuildStatusesOut:
    """Every commit status recorded for the build, oldest first, and whether it was sent."""
    if session.get(Build, build_id) is None:
        raise NotFound(f"Build {build_id} does not exist.", code="build_not_found")
    posts = queries.posts_for_build(session, build_id)
    return BuildStatusesOut(
        build_id=build_id, items=[StatusPostOut.model_validate(p) for p in posts]
    )
