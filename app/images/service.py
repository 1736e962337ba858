"""Images: recording what a build produced and finding it again."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.errors import NotFound
from app.images import queries
from app.images.references import pull_reference
from app.images.schemas import ImageOut, Layer, ReplicaPresence
from app.models import Image, ReplicaState

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def record(
    session: Session,
    *,
    build_id: int,
    attempt: int,
    image_name: str,
    tag: str,
    manifest_digest: str,
    config_digest: str,
    media_type: str,
    size: int,
    layers: list[dict[str, Any]],
    roles: dict[str, str],
    labels: dict[str, str],
) -> Image:
    values: dict[str, Any] = {
        "attempt": attempt,
        "name": image_name,
        "tag": tag,
        "manifest_digest": manifest_digest,
        "config_digest": config_digest,
        "media_type": media_type,
        "size": size,
        "layers": layers,
        "roles": roles,
        "labels": labels,
    }
    # A build has one image; a later attempt (after a replica shortfall, say) replaces it.
    image = session.scalar(select(Image).where(Image.build_id == build_id))
    if image is None:
        image = Image(build_id=build_id, **values)
        session.add(image)
    else:
        for key, value in values.items():
            setattr(image, key, value)
    session.flush()
    return image


def get_by_digest(session: Session, digest: str) -> ImageOut:
    return _out(session, _offered(_by_digest(session, digest)))


def set_pinned(session: Session, digest: str, pinned: bool) -> ImageOut:
    """Pins (retention always keeps it) or unpins the image. Only flushes."""
    found = _offered(_by_digest(session, digest))
    found.image.pinned = pinned
    session.flush()
    return _out(session, found)


def _by_digest(session: Session, digest: str) -> queries.ImageOrigin:
    found = queries.by_digest(session, digest) if DIGEST.match(digest) else None
    if found is None:
        raise NotFound(f"No image has the digest {digest}.", code="image_not_found")
    return found


def _offered(found: queries.ImageOrigin) -> queries.ImageOrigin:
    """The image, unless retention is deleting it (or has): then it is no longer offered."""
    image = found.image
    if image.deleting_at is not None:
        raise NotFound(
            f"Image {image.manifest_digest} was deleted by retention "
            f"(since {image.deleting_at.isoformat(timespec='seconds')}).",
            code="image_deleted",
        )
    return found


def get_by_sha(session: Session, owner: str, name: str, sha: str) -> ImageOut:
    found = queries.by_repository_and_sha(session, f"{owner}/{name}", sha)
    if found is None:
        raise NotFound(
            f"{owner}/{name} has no image for {sha} (not built yet, or its build failed).",
            code="image_not_found",
        )
    return _out(session, _offered(found))


def _out(session: Session, found: queries.ImageOrigin) -> ImageOut:
    image = found.image
    replicas = [
        ReplicaPresence(
            registry=registry.name,
            required=registry.required,
            present=replica is not None
            and replica.state is ReplicaState.PRESENT
            and replica.verified_digest == image.manifest_digest,
            verified_at=replica.verified_at if replica is not None else None,
        )
        for registry, replica in queries.replicas_of(session, image.id)
    ]
    return ImageOut(
        id=image.id,
        build_id=image.build_id,
        build_status=found.build_status,
        attempt=image.attempt,
        source_repository=found.full_name,
        sha=found.sha,
        name=image.name,
        tag=image.tag,
        digest=image.manifest_digest,
        reference=pull_reference(get_settings().proxy_host, image.name, image.manifest_digest),
        config_digest=image.config_digest,
        media_type=image.media_type,
        size=image.size,
        layers=[Layer(**layer) for layer in image.layers],
        roles=image.roles,
        labels=image.labels,
        replicas=replicas,
        pinned=image.pinned,
        last_pulled_at=image.last_pulled_at,
        created_at=image.created_at,
    )
