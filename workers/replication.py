"""Periodic health checks of the registry replicas, and repair of the images they lack."""

from __future__ import annotations

import logging
from datetime import timedelta

from app.broker import get_celery
from app.builds.quorum import settle_waiting_builds
from app.config import get_settings
from app.db import session_scope
from app.models.base import utcnow
from app.outbox.service import enqueue
from app.registries import queries
from app.registries.declared import sync_declared
from app.registries.replication import repair_image
from app.registries.service import check_health

log = logging.getLogger(__name__)
celery_app = get_celery()

CHECK_TASK = "cartridge.registries.check"
REPAIR_TASK = "cartridge.registries.repair"


@celery_app.task(name=CHECK_TASK, ignore_result=True)
def check_replicas() -> dict[str, str | None]:
    """Records each replica's health; every healthy replica that lacks images another replica
    holds gets a repair job (a replica that was down during a push is caught up once it answers
    again). Replicas declared in the settings are registered first."""
    with session_scope() as session:
        sync_declared(session, get_settings())
    errors = check_health()
    with session_scope() as session:
        for registry in queries.serving_registries(session):
            if errors.get(registry.name):
                log.warning("registry %s is unhealthy: %s", registry.name, errors[registry.name])
            elif queries.images_to_repair(session, registry.id, limit=1):
                enqueue(session, REPAIR_TASK, [registry.id], queue=get_settings().default_queue)
    with session_scope() as session:
        settle_waiting_builds(session)  # builds past their quorum deadline end here
    return errors


@celery_app.task(name=REPAIR_TASK, ignore_result=True)
def repair_replica(registry_id: int) -> int:
    """Copies up to `repair_batch_size` missing images to the replica, verified by digest.
    Returns how many are now present. Overlapping runs for one replica do nothing twice: the
    first takes a lease, the others return at once."""
    settings = get_settings()
    lease = timedelta(seconds=settings.repair_lease_seconds)
    with session_scope() as session:
        if not queries.claim_repair(session, registry_id, utcnow() + lease):
            return 0
        image_ids = queries.images_to_repair(session, registry_id, limit=settings.repair_batch_size)
    repaired = 0
    try:
        for image_id in image_ids:
            outcome = repair_image(image_id=image_id, registry_id=registry_id)
            if outcome.present:
                repaired += 1
            else:
                log.warning(
                    "image %s not repaired on %s: %s", image_id, outcome.name, outcome.error
                )
    finally:
        with session_scope() as session:
            queries.release_repair(session, registry_id)
    if repaired:
        with session_scope() as session:
            settle_waiting_builds(session)
    return repaired
