"""The Celery application the workers run: `celery -A workers.celery_app worker`."""

from __future__ import annotations

from app.broker import get_celery
from app.config import get_settings

celery_app = get_celery()
celery_app.conf.include = ["workers.maintenance", "workers.replication"]
celery_app.conf.beat_schedule = {
    "relay-outbox": {
        "task": "cartridge.outbox.relay",
        "schedule": get_settings().outbox_relay_interval_seconds,
    },
    "check-registry-replicas": {
        "task": "cartridge.registries.check",
        "schedule": get_settings().registry_health_interval_seconds,
    },
}
