"""The transactional outbox: jobs are rows first, broker messages after the commit.

`enqueue` writes a row in the caller's transaction. When that transaction commits, the ids are
handed to the relay, which publishes them and marks them dispatched. Rows the relay could not
publish (broker down, process died) are picked up again by `relay_pending`, run periodically.
Tasks are idempotent, so a message published twice does no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select, text, update
from sqlalchemy.orm import Session

from app.models import OutboxMessage
from app.models.base import utcnow

log = logging.getLogger(__name__)

_PENDING_KEY = "cartridge.outbox_ids"


def enqueue(
    session: Session, task_name: str, args: list[Any], *, queue: str, countdown: int = 0
) -> OutboxMessage:
    message = OutboxMessage(
        task_name=task_name, queue=queue, args=args, countdown_seconds=countdown
    )
    session.add(message)
    session.flush()
    session.info.setdefault(_PENDING_KEY, []).append(message.id)
    return message


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    ids = session.info.pop(_PENDING_KEY, None)
    if ids:
        from app.outbox.relay import get_relay

        get_relay().notify(ids)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def publish(session: Session, messages: Iterable[OutboxMessage], publisher: Any) -> int:
    """Sends each message; marks the sent ones dispatched. Returns how many were sent."""
    sent: list[int] = []
    for message in messages:
        try:
            publisher.send_task(
                message.task_name,
                args=message.args,
                queue=message.queue,
                countdown=message.countdown_seconds or None,
                retry=False,
            )
        except Exception as exc:  # the broker's error types vary by transport
            log.warning("outbox %s not dispatched: %s", message.id, exc)
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message.id)
                .values(attempts=OutboxMessage.attempts + 1, last_error=str(exc)[:1000])
            )
            break  # the broker is unreachable; the rest waits for the next relay pass
        sent.append(message.id)
    if sent:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(sent), OutboxMessage.dispatched_at.is_(None))
            .values(dispatched_at=utcnow(), last_error=None)
        )
    return len(sent)


def pending_messages(
    session: Session,
    *,
    ids: list[int] | None = None,
    older_than: timedelta | None = None,
    limit: int = 500,
) -> list[OutboxMessage]:
    _relax_commit_durability(session)
    query = select(OutboxMessage).where(OutboxMessage.dispatched_at.is_(None))
    if ids is not None:
        query = query.where(OutboxMessage.id.in_(ids))
    if older_than is not None:
        query = query.where(OutboxMessage.created_at <= utcnow() - older_than)
    # Concurrent relays skip each other's rows instead of sending them twice.
    query = query.order_by(OutboxMessage.id).limit(limit).with_for_update(skip_locked=True)
    return list(session.scalars(query))


def _relax_commit_durability(session: Session) -> None:
    # Marking rows dispatched need not wait for the WAL flush: if a crash loses the mark, the
    # row is sent again, which idempotent tasks allow. This halves the fsyncs per webhook.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def relay_pending(session: Session, publisher: Any, *, older_than: timedelta | None = None) -> int:
    """Publishes every undispatched message (oldest first). Returns how many were sent."""
    total = 0
    while True:
        batch = pending_messages(session, older_than=older_than)
        if not batch:
            return total
        sent = publish(session, batch, publisher)
        session.commit()
        total += sent
        if sent < len(batch):
            return total
