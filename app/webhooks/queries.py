"""Queries behind the webhook receiver."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.engine import dialect_insert, insert_for
from app.models import Push, Repository, WebhookDelivery
from app.repos.queries import find_by_full_name
from app.repos.schemas import default_image_name
from app.webhooks.schemas import RepositoryRef

# Statements are built once: building SQLAlchemy expressions costs more than running them.
_DELIVERY_OUTCOME = select(WebhookDelivery.outcome).where(WebhookDelivery.guid == bindparam("guid"))


@cache
def _insert_delivery(dialect: str) -> Any:
    return (
        dialect_insert(dialect, WebhookDelivery)
        .values(
            guid=bindparam("guid"),
            event=bindparam("event"),
            outcome=bindparam("outcome"),
            detail=bindparam("detail"),
            repository_full_name=bindparam("repository_full_name"),
            repository_id=bindparam("repository_id"),
        )
        .on_conflict_do_nothing(index_elements=["guid"])
        .returning(WebhookDelivery.id)
    )


def register_repository(session: Session, ref: RepositoryRef) -> Repository:
    """Registers a repository from a payload; concurrent first pushes register it once."""
    session.execute(
        insert_for(session, Repository)
        .values(
            full_name=ref.full_name,
            clone_url=ref.clone_url or f"https://github.com/{ref.full_name}.git",
            default_branch=ref.default_branch or "main",
            image_name=default_image_name(ref.full_name),
        )
        .on_conflict_do_nothing(index_elements=["full_name"])
    )
    repository = find_by_full_name(session, ref.full_name)
    assert repository is not None
    return repository


def record_delivery(
    session: Session,
    *,
    guid: str,
    event: str,
    outcome: str,
    detail: str | None,
    repository_full_name: str | None,
    repository_id: int | None,
) -> int | None:
    """Inserts the delivery; None when that `X-GitHub-Delivery` id is already recorded (a
    concurrent copy waits for the first one's commit and then finds it)."""
    params = {
        "guid": guid,
        "event": event,
        "outcome": outcome,
        "detail": detail,
        "repository_full_name": repository_full_name,
        "repository_id": repository_id,
    }
    dialect = session.get_bind().dialect.name
    inserted = session.connection().execute(_insert_delivery(dialect), params)
    row_id: int | None = inserted.scalar_one_or_none()
    return row_id


def recorded_outcome(session: Session, guid: str) -> str | None:
    return session.scalars(_DELIVERY_OUTCOME, {"guid": guid}).first()


def recent_deliveries(
    session: Session,
    *,
    event: str | None,
    outcome: str | None,
    repository: str | None,
    before_id: int | None,
    limit: int,
) -> list[tuple[WebhookDelivery, int | None]]:
    """Deliveries newest first, each with the build its push made (None: no build)."""
    query = (
        select(WebhookDelivery, Push.build_id)
        .outerjoin(Push, Push.webhook_delivery_id == WebhookDelivery.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    if event:
        query = query.where(WebhookDelivery.event == event)
    if outcome:
        query = query.where(WebhookDelivery.outcome == outcome)
    if repository:
        query = query.where(WebhookDelivery.repository_full_name == repository)
    return [(delivery, build_id) for delivery, build_id in session.execute(query)]
