"""Image read endpoints: by manifest digest, or by repository and commit SHA."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import AdminToken, DbSession, ReadAccess
from app.images import service
from app.images.schemas import ImageOut

router = APIRouter(tags=["images"])

Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{40}$", description="The full commit SHA.")]


@router.get("/images/{digest}", response_model=ImageOut)
def get_image_by_digest(digest: str, session: DbSession, _access: ReadAccess) -> ImageOut:
    """The image whose manifest digest is `digest` (`sha256:...`)."""
    return service.get_by_digest(session, digest)


@router.put("/images/{digest}/pin", response_model=ImageOut)
def pin_image(digest: str, session: DbSession, _token: AdminToken) -> ImageOut:
    """Pins the image: retention keeps it whatever its age or branch."""
    return service.set_pinned(session, digest, True)


@router.delete("/images/{digest}/pin", response_model=ImageOut)
def unpin_image(digest: str, session: DbSession, _token: AdminToken) -> ImageOut:
    """Unpins the image: retention's other rules decide again."""
    return service.set_pinned(session, digest, False)


@router.get("/repos/{owner}/{name}/images/{sha}", response_model=ImageOut)
def get_image_by_sha(
    owner: str, name: str, sha: Sha, session: DbSession, _access: ReadAccess
) -> ImageOut:
    """The image built from commit `sha` of the repository `owner/name`."""
    return service.get_by_sha(session, owner, name, sha)
