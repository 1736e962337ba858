"""Image retention: the periodic prune, and the deletion of one image from one replica."""

from __future__ import annotations

import logging

import httpx

from app.broker import get_celery
from app.config import get_settings
from app.db import session_scope
from app.images.references import path_in_registry
from app.models import DeletionState, ImageDeletion, Registry
from app.registries.distribution import base_url
from app.registry_auth.client import registry_client_auth
from app.retention.service import DELETE_TASK, PRUNE_TASK, apply, record_attempt

log = logging.getLogger(__name__)
celery_app = get_celery()
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@celery_app.task(name=PRUNE_TASK, ignore_result=True)
def prune_images() -> int:
    """Applies the retention policy to at most `CARTRIDGE_RETENTION_BATCH_SIZE` images."""
    settings = get_settings()
    if not settings.retention_enabled:
        return 0
    with session_scope() as session:
        deleting = apply(session, settings, limit=settings.retention_batch_size)
    if deleting:
        log.info("retention: deleting %d images: %s", len(deleting), deleting)
    return len(deleting)


@celery_app.task(name=DELETE_TASK, ignore_result=True)
def delete_from_replica(deletion_id: int) -> str:
    """Sends the manifest DELETE, by digest, outside any transaction, then records the answer."""
    settings = get_settings()
    with session_scope() as session:
        deletion = session.get(ImageDeletion, deletion_id)
        if deletion is None or deletion.state is not DeletionState.QUEUED:
            return "nothing to do"
        registry = session.get(Registry, deletion.registry_id) if deletion.registry_id else None
        target = registry.url if registry is not None else None
        path, digest, tries = (
            path_in_registry(deletion.image_name),
            deletion.manifest_digest,
            deletion.tries,
        )
    status_code, error = (404, "the replica was removed") if target is None else (None, None)
    if target is not None:
        url = f"{base_url(target)}/v2/{path}/manifests/{digest}"
        try:
            response = httpx.delete(
                url,
                headers={"Accept": MANIFEST_TYPES},
                timeout=settings.registry_timeout_seconds,
                auth=registry_client_auth(settings),
            )
            status_code = response.status_code
            error = None if status_code in (202, 404) else response.text[:500]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
    with session_scope() as session:
        deletion = session.get(ImageDeletion, deletion_id, with_for_update=True)
        if (
            deletion is None
            or deletion.state is not DeletionState.QUEUED
            or deletion.tries != tries
        ):
            return "settled by another run"
        state = record_attempt(
            session, deletion, status_code=status_code, error=error, settings=settings
        )
    if state is DeletionState.REFUSED:
        log.error("replica refuses deletes: image %s on %s", digest, target)
    return state.value
