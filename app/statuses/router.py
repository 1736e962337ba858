"""HTTP: the commit status history of a build."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import DbSession, ReadAccess
from app.api.params import BuildId
from app.api.responses import errors
from app.errors import ErrorCode, NotFound
from app.models import Build
from app.statuses import queries
from app.statuses.schemas import BuildStatusesOut, StatusPostOut

router = APIRouter(tags=["statuses"])


@router.get(
    "/builds/{build_id}/statuses",
    response_model=BuildStatusesOut,
    responses=errors(ErrorCode.BUILD_NOT_FOUND),
)
def build_statuses(build_id: BuildId, session: DbSession, _access: ReadAccess) -> BuildStatusesOut:
    """Every commit status recorded for the build, oldest first, and whether it was sent."""
    if session.get(Build, build_id) is None:
        raise NotFound(f"Build {build_id} does not exist.", code=ErrorCode.BUILD_NOT_FOUND)
    posts = queries.posts_for_build(session, build_id)
    return BuildStatusesOut(
        build_id=build_id, items=[StatusPostOut.model_validate(p) for p in posts]
    )
