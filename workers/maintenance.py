"""Periodic housekeeping tasks."""

from __future__ import annotations

from datetime import timedelta

from app.broker import get_celery
from app.builds import leases, redispatch
from app.config import get_settings
from app.db import get_session_factory, session_scope
from app.outbox.service import relay_pending

celery_app = get_celery()


@celery_app.task(name="cartridge.outbox.relay", ignore_result=True)
def relay_outbox() -> int:
    """Re-sends outbox rows that were committed but never reached the broker."""
    grace = timedelta(seconds=get_settings().outbox_relay_grace_seconds)
    with get_session_factory()() as session:
        return relay_pending(session, celery_app, older_than=grace)


@celery_app.task(name="cartridge.builds.reap_expired_leases", ignore_result=True)
def reap_expired_leases() -> dict[str, list[int]]:
    """Retries, or past the bound errors, running builds whose worker stopped heartbeating."""
    with session_scope() as session:
        result = leases.reap_expired_leases(session, get_settings())
    return {"requeued": result.requeued, "errored": result.errored}


@celery_app.task(name="cartridge.rows.prune", ignore_result=True)
def prune_old_rows() -> dict[str, int]:
    """Deletes old deliveries, dispatched outbox rows, sent status posts and old build logs."""
    from app.row_retention.service import RetentionPolicy, prune

    report = prune(get_session_factory(), RetentionPolicy.of(get_settings()))
    return report.counts


@celery_app.task(name="cartridge.builds.redispatch", ignore_result=True)
def redispatch_lost_jobs() -> list[int]:
    """Sends again the jobs of long-queued builds that the broker no longer holds."""
    with session_scope() as session:
        return redispatch.redispatch_lost(session, get_settings())
