"""Asking GitHub to redeliver the App's hook deliveries that failed and were never recorded.

GitHub never retries a failed delivery by itself, and keeps deliveries for 3 days. An event
(one GUID) counts as handled when any attempt at it has status "OK", or when Cartridge recorded
its GUID anyway (GitHub may time out on an answer that was committed). For every other GUID one
attempt is redelivered; the redelivery carries the same X-GitHub-Delivery, so the receiver's
deduplication makes a second copy harmless. A GUID is asked for at most a bounded number of
times, and not again before the next pass has seen how the last request went.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.config import Settings
from app.github.client import GitHubClient, HookDelivery
from app.github.errors import GitHubError, RateLimited
from app.models import HookRedelivery
from app.models.base import utcnow
from app.reconcile import queries

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]


@dataclass
class RedeliveryResult:
    listed: int = 0
    failed_events: int = 0
    requested: list[str] = field(default_factory=list)
    error: str | None = None


def redeliver_failed(
    sessions: SessionFactory,
    client: GitHubClient,
    settings: Settings,
    *,
    since: datetime,
    sleep: Callable[[float], None] = time.sleep,
) -> RedeliveryResult:
    """Lists the App's deliveries back to `since` and asks for the redelivery of each failed
    event Cartridge never recorded. Raises `RateLimited`; other GitHub errors end the step."""
    result = RedeliveryResult()
    oldest = utcnow() - timedelta(days=settings.reconcile_deliveries_days)
    try:
        deliveries = client.list_app_hook_deliveries(max(since, oldest))
    except RateLimited:
        raise
    except GitHubError as exc:
        result.error = exc.reason
        return result
    result.listed = len(deliveries)
    failed = _failed_events(deliveries)
    result.failed_events = len(failed)
    if not failed:
        return result
    with sessions() as session, session.begin():
        recorded = queries.recorded_guids(session, list(failed))
        asked = queries.redeliveries_of(session, list(failed))
    # A request made since this pass's listing window opened has not been seen through yet.
    wait_after = utcnow() - timedelta(seconds=settings.reconcile_interval_seconds / 2)
    for guid, attempt in failed.items():
        if guid in recorded:
            continue
        previous = asked.get(guid)
        if previous is not None and (
            previous.requests >= settings.reconcile_max_redelivery_requests
            or previous.last_requested_at > wait_after
        ):
            continue
        if result.requested:
            sleep(settings.github_mutation_interval_seconds)
        try:
            client.redeliver_app_hook(attempt.id)
        except RateLimited:
            raise
        except GitHubError as exc:
            result.error = f"redelivery of {guid}: {exc.reason}"
            log.warning("redelivery of hook delivery %s (%s) refused: %s", attempt.id, guid, exc)
            continue
        with sessions() as session, session.begin():
            _note_request(session, previous, attempt)
        result.requested.append(guid)
        log.info(
            "asked GitHub to redeliver %s event %s (delivery %s)", attempt.event, guid, attempt.id
        )
    return result


def _failed_events(deliveries: list[HookDelivery]) -> dict[str, HookDelivery]:
    """The newest attempt of every GUID none of whose attempts succeeded."""
    done: set[str] = set()
    newest: dict[str, HookDelivery] = {}
    for delivery in deliveries:
        if delivery.succeeded:
            done.add(delivery.guid)
        current = newest.get(delivery.guid)
        if current is None or delivery.delivered_at > current.delivered_at:
            newest[delivery.guid] = delivery
    return {guid: attempt for guid, attempt in newest.items() if guid not in done}


def _note_request(session: Session, previous: HookRedelivery | None, attempt: HookDelivery) -> None:
    row = session.get(HookRedelivery, attempt.guid) if previous is not None else None
    if row is None:
        session.add(
            HookRedelivery(
                guid=attempt.guid,
                delivery_id=attempt.id,
                event=attempt.event[:100],
                requests=1,
                last_requested_at=utcnow(),
            )
        )
    else:
        row.requests += 1
        row.delivery_id = attempt.id
        row.last_requested_at = utcnow()
    session.flush()
