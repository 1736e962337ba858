"""Queries behind the webhook receiver."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.builds.queueing import dialect_insert, insert_for
from app.models import Repository, WebhookDelivery
from app.webhooks.schemas import RepositoryRef

_NOT_IMAGE_NAME_CHARS = re.compile(r"[^a-z0-9._-]+")
_SEPARATOR_RUNS = re.compile(r"[._-]{2,}")


# Statements are built once: building SQLAlchemy expressions costs more than running them.
_REPOSITORY_BY_NAME = select(Repository).where(Repository.full_name == bindparam("full_name"))
_REPOSITORY_BY_NAME_ANY_CASE = (
    select(Repository)
    .where(func.lower(Repository.full_name) == bindparam("full_name"))
    .order_by(Repository.id)
)
_DELIVERY_OUTCOME = select(WebhookDelivery.outcome).where(
    WebhookDelivery.delivery_id == bindparam("delivery_id")
)


@cache
def _insert_delivery(dialect: str) -> Any:
    return (
        dialect_insert(dialect, WebhookDelivery)
        .values(
            delivery_id=bindparam("delivery_id"),
            event=bindparam("event"),
            outcome=bindparam("outcome"),
            detail=bindparam("detail"),
            repository_full_name=bindparam("repository_full_name"),
            repository_id=bindparam("repository_id"),
        )
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(WebhookDelivery.id)
    )


def find_repository(session: Session, full_name: str) -> Repository | None:
    exact = session.scalars(_REPOSITORY_BY_NAME, {"full_name": full_name}).first()
    if exact is not None:
        return exact
    # GitHub names are case-insensitive; a repository registered as "Octo/App" still matches.
    return session.scalars(_REPOSITORY_BY_NAME_ANY_CASE, {"full_name": full_name.lower()}).first()


def derive_image_name(full_name: str) -> str:
    """`Octo/My.App` -> `octo-my.app`: lower case, "/" replaced by "-", characters Docker does
    not allow in a repository name replaced by "-". One flat path component per repository keeps
    image references predictable (`<registry>/<image_name>:<sha>`)."""
    name = _NOT_IMAGE_NAME_CHARS.sub("-", full_name.lower().replace("/", "-"))
    return _SEPARATOR_RUNS.sub("-", name).strip("._-") or "repository"


def register_repository(session: Session, ref: RepositoryRef) -> Repository:
    """Registers a repository from a payload; concurrent first pushes register it once."""
    session.execute(
        insert_for(session, Repository)
        .values(
            full_name=ref.full_name,
            clone_url=ref.clone_url or f"https://github.com/{ref.full_name}.git",
            default_branch=ref.default_branch or "main",
            image_name=derive_image_name(ref.full_name),
        )
        .on_conflict_do_nothing(index_elements=["full_name"])
    )
    repository = find_repository(session, ref.full_name)
    assert repository is not None
    return repository


def record_delivery(
    session: Session,
    *,
    delivery_id: str,
    event: str,
    outcome: str,
    detail: str | None,
    repository_full_name: str | None,
    repository_id: int | None,
) -> int | None:
    """Inserts the delivery; None when that `X-GitHub-Delivery` id is already recorded (a
    concurrent copy waits for the first one's commit and then finds it)."""
    params = {
        "delivery_id": delivery_id,
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


def recorded_outcome(session: Session, delivery_id: str) -> str | None:
    return session.scalars(_DELIVERY_OUTCOME, {"delivery_id": delivery_id}).first()
