"""Queries behind the webhook receiver."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.builds.queueing import insert_for
from app.models import Repository, WebhookDelivery
from app.webhooks.schemas import RepositoryRef

_NOT_IMAGE_NAME_CHARS = re.compile(r"[^a-z0-9._-]+")
_SEPARATOR_RUNS = re.compile(r"[._-]{2,}")


def find_repository(session: Session, full_name: str) -> Repository | None:
    exact = session.scalars(select(Repository).where(Repository.full_name == full_name)).first()
    if exact is not None:
        return exact
    # GitHub names are case-insensitive; a repository registered as "Octo/App" still matches.
    return session.scalars(
        select(Repository)
        .where(func.lower(Repository.full_name) == full_name.lower())
        .order_by(Repository.id)
    ).first()


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
    return session.execute(
        insert_for(session, WebhookDelivery)
        .values(
            delivery_id=delivery_id,
            event=event,
            outcome=outcome,
            detail=detail,
            repository_full_name=repository_full_name,
            repository_id=repository_id,
        )
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(WebhookDelivery.id)
    ).scalar_one_or_none()


def recorded_outcome(session: Session, delivery_id: str) -> str | None:
    return session.scalars(
        select(WebhookDelivery.outcome).where(WebhookDelivery.delivery_id == delivery_id)
    ).first()
