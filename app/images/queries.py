"""Image queries. Each returns the image with the GitHub repository and SHA it was built from."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Build, Image, ImageReplica, Registry, Repository


class ImageOrigin(NamedTuple):
    image: Image
    full_name: str
    sha: str
    build_status: str


_WITH_ORIGIN = (
    select(Image, Repository.full_name, Build.sha, Build.status)
    .join(Build, Build.id == Image.build_id)
    .join(Repository, Repository.id == Build.repository_id)
)


def by_digest(session: Session, digest: str) -> ImageOrigin | None:
    # A digest names content; should two builds ever produce the same bytes, the latest wins.
    row = session.execute(
        _WITH_ORIGIN.where(Image.manifest_digest == digest).order_by(Image.id.desc()).limit(1)
    ).first()
    return None if row is None else ImageOrigin._make(row)


def by_repository_and_sha(session: Session, full_name: str, sha: str) -> ImageOrigin | None:
    row = session.execute(
        _WITH_ORIGIN.where(Repository.full_name == full_name, Build.sha == sha)
    ).first()
    return None if row is None else ImageOrigin._make(row)


def replicas_of(session: Session, image_id: int) -> list[tuple[Registry, ImageReplica | None]]:
    """Every registry replica, with what is recorded about the image on it (None: nothing)."""
    rows = session.execute(
        select(Registry, ImageReplica)
        .outerjoin(
            ImageReplica,
            (ImageReplica.registry_id == Registry.id) & (ImageReplica.image_id == image_id),
        )
        .order_by(Registry.name)
    ).all()
    return [(registry, replica) for registry, replica in rows]
