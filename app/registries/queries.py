"""Queries and row writes for registry replicas and per-replica image presence."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from app.engine import insert_for
from app.models import Image, ImageReplica, ProxyHost, Registry, ReplicaState
from app.models.base import utcnow


def list_registries(session: Session) -> list[Registry]:
    return list(session.scalars(select(Registry).order_by(Registry.name)))


def serving_registries(session: Session) -> list[Registry]:
    """The replicas builds are copied to and the proxy reads from: all but those in maintenance."""
    return [r for r in list_registries(session) if not r.maintenance]


def get_by_name(session: Session, name: str) -> Registry | None:
    return session.scalar(select(Registry).where(Registry.name == name))


def presence_rows(session: Session, image_id: int) -> list[ImageReplica]:
    return list(session.scalars(select(ImageReplica).where(ImageReplica.image_id == image_id)))


def _missing_on(registry_id: int) -> Select[Image, ImageReplica]:
    """Images not verified present on the replica: a `missing` row, or no row at all (the image
    predates the replica, or its push never reached the recording step)."""
    return (
        select(Image, ImageReplica)
        .outerjoin(
            ImageReplica,
            and_(ImageReplica.image_id == Image.id, ImageReplica.registry_id == registry_id),
        )
        .where(
            Image.deleting_at.is_(None),
            or_(ImageReplica.id.is_(None), ImageReplica.state != ReplicaState.PRESENT),
        )
    )


def missing_images(
    session: Session, registry_id: int, *, limit: int, before_id: int | None = None
) -> list[tuple[Image, ImageReplica | None]]:
    """Newest first; `before_id` is the cursor (the last image id of the previous page)."""
    query = _missing_on(registry_id).order_by(Image.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Image.id < before_id)
    return [(image, row) for image, row in session.execute(query).all()]


def images_to_repair(session: Session, registry_id: int, *, limit: int) -> list[int]:
    """Images the replica lacks and another replica holds. Never-attempted ones first, then the
    least recently attempted, so that one image that keeps failing does not starve the others."""
    elsewhere = aliased(ImageReplica)
    held_elsewhere = (
        select(elsewhere.id)
        .where(
            elsewhere.image_id == Image.id,
            elsewhere.registry_id != registry_id,
            elsewhere.state == ReplicaState.PRESENT,
        )
        .exists()
    )
    query = (
        _missing_on(registry_id)
        .with_only_columns(Image.id)
        .where(held_elsewhere)
        .order_by(ImageReplica.updated_at.asc().nulls_first(), Image.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def missing_counts(session: Session) -> dict[int, int]:
    """Registry id -> how many images it lacks."""
    live = Image.deleting_at.is_(None)
    total_images = session.scalar(select(func.count(Image.id)).where(live)) or 0
    present_counts = session.execute(
        select(ImageReplica.registry_id, func.count(ImageReplica.id))
        .join(Image, Image.id == ImageReplica.image_id)
        .where(ImageReplica.state == ReplicaState.PRESENT, live)
        .group_by(ImageReplica.registry_id)
    )
    present: dict[int, int] = dict(present_counts.all())
    return {
        registry_id: total_images - present.get(registry_id, 0)
        for registry_id in session.scalars(select(Registry.id))
    }


def sources_holding(session: Session, image_id: int, *, exclude: int) -> list[Registry]:
    """Replicas the image is verified on, healthy ones first."""
    query = (
        select(Registry)
        .join(ImageReplica, ImageReplica.registry_id == Registry.id)
        .where(
            ImageReplica.image_id == image_id,
            ImageReplica.state == ReplicaState.PRESENT,
            Registry.id != exclude,
        )
        .order_by(Registry.healthy.desc(), ImageReplica.verified_at.desc())
    )
    return list(session.scalars(query))


def mount_sources(
    session: Session, registry_ids: Iterable[int], digests: set[str], *, exclude_name: str
) -> dict[int, dict[str, str]]:
    """Registry id -> {blob digest: another repository on it that holds the blob}, from the
    layers of recent images verified there. Lets a replica mount a shared base layer instead of
    receiving it again."""
    ids = list(registry_ids)
    found: dict[int, dict[str, str]] = {registry_id: {} for registry_id in ids}
    if not ids or not digests:
        return found
    query = (
        select(ImageReplica.registry_id, Image.name, Image.config_digest, Image.layers)
        .join(Image, Image.id == ImageReplica.image_id)
        .where(
            ImageReplica.registry_id.in_(ids),
            ImageReplica.state == ReplicaState.PRESENT,
            Image.name != exclude_name,
        )
        .order_by(Image.id.desc())
        .limit(500)
    )
    for registry_id, repository, config_digest, layers in session.execute(query):
        held = {config_digest, *(layer.get("digest") for layer in layers or [])}
        for digest in digests & held:
            found[registry_id].setdefault(digest, repository)
    return found


def record_presence(
    session: Session,
    image_id: int,
    registry_id: int,
    *,
    verified_digest: str | None,
    error: str | None,
) -> None:
    """Upserts the replica's last verification of the image (concurrent writers are fine)."""
    now = utcnow()
    values: dict[str, Any] = {
        "state": ReplicaState.PRESENT if verified_digest else ReplicaState.MISSING,
        "verified_digest": verified_digest,
        "last_error": error,
        "updated_at": now,
    }
    if verified_digest:
        values["verified_at"] = now
    statement = insert_for(session, ImageReplica).values(
        image_id=image_id, registry_id=registry_id, **values
    )
    statement = statement.on_conflict_do_update(
        index_elements=["image_id", "registry_id"], set_=values
    )
    session.execute(statement)


def record_health(session: Session, registry_id: int, error: str | None, when: datetime) -> None:
    session.execute(
        update(Registry)
        .where(Registry.id == registry_id)
        .values(healthy=error is None, last_checked_at=when, last_error=error)
    )


def claim_repair(session: Session, registry_id: int, until: datetime) -> bool:
    """Takes the replica's repair lease unless another run holds an unexpired one."""
    now = utcnow()
    result = session.execute(
        update(Registry)
        .where(
            Registry.id == registry_id,
            or_(
                Registry.repair_lease_expires_at.is_(None),
                Registry.repair_lease_expires_at < now,
            ),
        )
        .values(repair_lease_expires_at=until)
    )
    return bool(getattr(result, "rowcount", 0))


def release_repair(session: Session, registry_id: int) -> None:
    session.execute(
        update(Registry).where(Registry.id == registry_id).values(repair_lease_expires_at=None)
    )


def proxy_hosts(session: Session) -> list[ProxyHost]:
    return list(session.scalars(select(ProxyHost).order_by(ProxyHost.host_name)))
