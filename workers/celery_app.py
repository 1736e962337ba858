"""The Celery application the workers run: `celery -A workers.celery_app worker`."""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging, worker_process_init

from app.broker import get_celery
from app.config import get_settings
from app.engine import get_engine
from app.logs import configure_logging

settings = get_settings()
celery_app = get_celery()
celery_app.conf.include = [
    "workers.maintenance",
    "workers.builds",
    "workers.statuses",
    "workers.replication",
    "workers.reconcile",
    "workers.retention",
]
celery_app.conf.beat_schedule = {
    "relay-outbox": {
        "task": "cartridge.outbox.relay",
        "schedule": settings.outbox_relay_interval_seconds,
    },
    "reap-expired-build-leases": {
        "task": "cartridge.builds.reap_expired_leases",
        "schedule": settings.lease_reaper_interval_seconds,
    },
    "redispatch-lost-build-jobs": {
        "task": "cartridge.builds.redispatch",
        "schedule": settings.redispatch_interval_seconds,
    },
    "redrive-statuses": {
        "task": "cartridge.statuses.redrive",
        "schedule": settings.github_status_redrive_seconds,
    },
    "reconcile-branch-heads": {
        "task": "cartridge.reconcile.schedule",
        "schedule": settings.reconcile_interval_seconds,
    },
    "prune-old-rows": {
        "task": "cartridge.rows.prune",
        "schedule": settings.row_retention_interval_seconds,
    },
    "check-registry-replicas": {
        "task": "cartridge.registries.check",
        "schedule": settings.registry_health_interval_seconds,
    },
    "prune-images": {
        "task": "cartridge.images.prune",
        "schedule": settings.retention_interval_seconds,
    },
}


@setup_logging.connect
def _logging(**_kwargs: Any) -> None:
    # Celery leaves logging alone when this signal has a receiver: the same format (text or
    # JSON, secrets redacted) as the API.
    configure_logging(get_settings())


@worker_process_init.connect
def _fresh_connections(**_kwargs: Any) -> None:
    # A forked pool process must not share the parent's database connections.
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
