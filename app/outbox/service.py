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
from functools import cache
from typing import Any

from sqlalchemy import Integer, Row, Select, Table, bindparam, event, insert, select, update
from sqlalchemy.orm import Session

from app.models import OutboxMessage
from app.models.base import utcnow

log = logging.getLogger(__name__)

_PENDING_KEY = "cartridge.outbox_ids"


def enqueue(
    session: Session, task_name: str, args: list[Any], *, queue: str, countdown: int = 0
) -> int:
    """Records the job in the caller's transaction and returns the outbox row's id. A Core
    INSERT: webhooks enqueue on every push, and the row is never needed as an object."""
    values = {"task_name": task_name, "queue": queue, "args": args, "countdown_seconds": countdown}
    message_id: int = session.connection().execute(_INSERT_MESSAGE, values).scalar_one()
    session.info.setdefault(_PENDING_KEY, []).append(message_id)
    return message_id


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    ids = session.info.pop(_PENDING_KEY, None)
    if ids:
        from app.outbox.relay import get_relay

        get_relay().notify(ids)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


Message = OutboxMessage | Row[Any]


def publish(session: Session, messages: Iterable[Message], publisher: Any) -> int:
    """Sends each message; marks the sent ones dispatched. Returns how many were sent."""
    # Plain Core statements on the session's connection: the relay runs after every webhook, and
    # the ORM's bookkeeping would cost more than the statements themselves.
    connection = session.connection()
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
            connection.execute(_MARK_FAILED, {"message_id": message.id, "error": str(exc)[:1000]})
            break  # the broker is unreachable; the rest waits for the next relay pass
        sent.append(message.id)
    if sent:
        connection.execute(_MARK_DISPATCHED, {"message_ids": sent, "now": utcnow()})
    return len(sent)


def pending_messages(
    session: Session,
    *,
    ids: list[int] | None = None,
    older_than: timedelta | None = None,
    limit: int = 500,
) -> list[Row[Any]]:
    """Undispatched rows (every column as an attribute), locked until the transaction ends."""
    params: dict[str, Any] = {"limit": limit}
    if ids is not None:
        params["message_ids"] = ids
    if older_than is not None:
        params["created_before"] = utcnow() - older_than
    query = _pending_query(ids is not None, older_than is not None)
    return list(session.connection().execute(query, params))


# Statements are built once: building SQLAlchemy expressions costs more than running them.
_outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]
_INSERT_MESSAGE = insert(_outbox).returning(_outbox.c.id)
_MARK_DISPATCHED = (
    update(_outbox)
    .where(
        _outbox.c.id.in_(bindparam("message_ids", expanding=True)),
        _outbox.c.dispatched_at.is_(None),
    )
    .values(dispatched_at=bindparam("now"), last_error=None)
)
_MARK_FAILED = (
    update(_outbox)
    .where(_outbox.c.id == bindparam("message_id"))
    .values(attempts=_outbox.c.attempts + 1, last_error=bindparam("error"))
)


@cache
def _pending_query(by_id: bool, by_age: bool) -> Select[Any]:
    query = select(_outbox).where(_outbox.c.dispatched_at.is_(None))
    if by_id:
        query = query.where(_outbox.c.id.in_(bindparam("message_ids", expanding=True)))
    if by_age:
        query = query.where(_outbox.c.created_at <= bindparam("created_before"))
    # Concurrent relays skip each other's rows instead of sending them twice.
    return (
        query.order_by(_outbox.c.id)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )


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
