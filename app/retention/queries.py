"""What retention reads: one repository's live images and pushes, and the deletions it owes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import Build, BuildStatus, DeletionState, Image, ImageDeletion, Push, Repository
from app.retention.policy import ImageFacts, PushFacts


def repositories(session: Session, full_name: str | None = None) -> list[Repository]:
    query = select(Repository).order_by(Repository.id)
    if full_name is not None:
        query = query.where(Repository.full_name == full_name)
    return list(session.scalars(query))


def live_images(session: Session, repository_id: int) -> list[ImageFacts]:
    """The repository's images that are not being deleted."""
    rows = session.execute(
        select(
            Image.id,
            Image.build_id,
            Image.name,
            Image.tag,
            Image.manifest_digest,
            Image.created_at,
            Image.pinned,
            Image.last_pulled_at,
        )
        .join(Build, Build.id == Image.build_id)
        .where(Build.repository_id == repository_id, Image.deleting_at.is_(None))
    )
    return [ImageFacts(*row) for row in rows]


def pushes(session: Session, repository_id: int) -> list[PushFacts]:
    rows = session.execute(
        select(
            Push.id,
            Push.branch,
            Push.deleted,
            Push.build_id,
            Build.status == BuildStatus.SUCCEEDED,
            Push.received_at,
        )
        .outerjoin(Build, Build.id == Push.build_id)
        .where(Push.repository_id == repository_id, Push.branch.is_not(None))
        .order_by(Push.id)
    )
    return [PushFacts(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]


def mark_deleting(session: Session, image_id: int, now: datetime) -> bool:
    """Takes the image out of service unless it was pinned or taken meanwhile."""
    result = session.execute(
        update(Image)
        .where(Image.id == image_id, Image.deleting_at.is_(None), Image.pinned.is_(False))
        .values(deleting_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


def deletions_not_done(session: Session, image_id: int) -> int:
    """The image's replica deletions still queued, refused or failed."""
    count = session.scalar(
        select(func.count(ImageDeletion.id)).where(
            ImageDeletion.image_id == image_id, ImageDeletion.state != DeletionState.DONE
        )
    )
    return count or 0


def unsettled_deletions(session: Session, *, include_done: bool = False) -> list[ImageDeletion]:
    query = select(ImageDeletion).order_by(ImageDeletion.id)
    if not include_done:
        query = query.where(ImageDeletion.state != DeletionState.DONE)
    return list(session.scalars(query.limit(1000)))
