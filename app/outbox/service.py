"""The transactional outbox: jobs are rows first, broker messages after the commit.

`enqueue` writes a row in the caller's transaction and remembers it in the session. When that
transaction commits, the unit of work (`app.db`) takes the messages (`take_committed`) and hands
them to the relay, which publishes them and marks them dispatched. Rows the relay could not
publish (broker down, process died) are picked up again by `relay_pending`, run periodically.
Tasks are idempotent, so a message published twice does no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from celery import Celery
from sqlalchemy import Integer, Row, Select, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from app.models import OutboxMessage
from app.models.base import utcnow

log = logging.getLogger(__name__)

_PENDING_KEY = "cartridge.outbox_committed"


@dataclass(frozen=True)
class CommittedMessage:
    """An outbox row as its transaction wrote it, handed to the relay after the commit so that
    the relay need not read it back."""

    id: int
    task_name: str
    queue: str
    args: list[Any]
    countdown_seconds: int


def enqueue(
    session: Session, task_name: str, args: list[Any], *, queue: str, countdown: int = 0
) -> int:
    """Records the job in the caller's transaction and returns the outbox row's id. A Core
    INSERT: webhooks enqueue on every push, and the row is never needed as an object."""
    values = {"task_name": task_name, "queue": queue, "args": args, "countdown_seconds": countdown}
    message_id: int = session.connection().execute(_INSERT_MESSAGE, values).scalar_one()
    message = CommittedMessage(message_id, task_name, queue, args, countdown)
    session.info.setdefault(_PENDING_KEY, []).append(message)
    return message_id


def take_committed(session: Session) -> list[CommittedMessage]:
    """The messages enqueued in the session's transaction that just committed, forgotten by the
    session as they are returned."""
    messages: list[CommittedMessage] = session.info.pop(_PENDING_KEY, [])
    return messages


def forget_uncommitted(session: Session) -> None:
    """Forgets the messages of a transaction that rolled back: their rows are gone too."""
    session.info.pop(_PENDING_KEY, None)


Message = OutboxMessage | Row[Any] | CommittedMessage


def send(
    messages: Sequence[Message], publisher: Celery
) -> tuple[list[int], tuple[int, str] | None]:
    """Sends the messages, all or none. Returns the ids sent and, if sending failed, the first
    message's id and the error; they all wait for the next relay pass.

    Several messages go out as one batch where the transport can (one Redis pipeline instead of a
    client and a round trip each); if that batch fails, none of it counts as sent, so the sweep
    sends it again later, twice at worst. A single message is sent as it is: a batch of one
    costs more."""
    if not messages:
        return [], None
    try:
        if len(messages) == 1:
            _send_one(publisher, messages[0], None)
        else:
            with publisher.producer_or_acquire() as producer, producer.batch():
                for message in messages:
                    _send_one(publisher, message, producer)
    except Exception as exc:  # the broker's error types vary by transport
        log.warning("outbox %s (%d in all) not dispatched: %s", messages[0].id, len(messages), exc)
        return [], (messages[0].id, str(exc)[:1000])
    return [message.id for message in messages], None


def _send_one(publisher: Celery, message: Message, producer: Any) -> None:
    publisher.send_task(
        message.task_name,
        args=message.args,
        queue=message.queue,
        countdown=message.countdown_seconds or None,
        retry=False,
        producer=producer,
    )


def record_sent(session: Session, sent: list[int], failure: tuple[int, str] | None) -> None:
    """Marks sent messages dispatched and counts a failed attempt. Plain Core statements: the
    relay runs after every webhook, and the ORM's bookkeeping would cost more than they do."""
    connection = session.connection()
    if sent:
        connection.execute(_MARK_DISPATCHED, {"message_ids": sent, "now": utcnow()})
    if failure is not None:
        message_id, error = failure
        connection.execute(_MARK_FAILED, {"message_id": message_id, "error": error})


def publish(session: Session, messages: Sequence[Message], publisher: Celery) -> int:
    """Sends each message; marks the sent ones dispatched. Returns how many were sent."""
    sent, failure = send(messages, publisher)
    record_sent(session, sent, failure)
    return len(sent)


def pending_messages(
    session: Session, *, older_than: timedelta | None = None, limit: int = 500
) -> list[Row[Any]]:
    """Undispatched rows (every column as an attribute), locked until the transaction ends."""
    params: dict[str, Any] = {"limit": limit}
    if older_than is not None:
        params["created_before"] = utcnow() - older_than
    query = _pending_query(older_than is not None)
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
def _pending_query(by_age: bool) -> Select[Any]:
    query = select(_outbox).where(_outbox.c.dispatched_at.is_(None))
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
