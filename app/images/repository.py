"""Image queries. Each returns the image with the GitHub repository and SHA it was built from."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Build, Image, Repository


class ImageOrigin(NamedTuple):
    image: Image
    full_name: str
    sha: str


_WITH_ORIGIN = (
    select(Image, Repository.full_name, Build.sha)
    .join(Build, Build.id == Image.build_id)
    .join(Repository, Repository.id == Build.repository_id)
)


def by_digest(session: Session, digest: str) -> ImageOrigin | None:
    # A digest names content; should two builds ever produce the same bytes, the latest wins.
    row = session.execute(
        _WITH_ORIGIN.where(Image.manifest_digest == digest).order_by(Image.id.desc()).limit(1)
    ).first()
    return None if row is None else ImageOrigin(row[0], row[1], row[2])


def by_repository_and_sha(session: Session, full_name: str, sha: str) -> ImageOrigin | None:
    row = session.execute(
        _WITH_ORIGIN.where(Repository.full_name == full_name, Build.sha == sha)
    ).first()
    return None if row is None else ImageOrigin(row[0], row[1], row[2])
