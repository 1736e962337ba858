"""Queries on repositories."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.models import Repository

# Built once: the webhook receiver looks a repository up on every delivery.
_BY_NAME = select(Repository).where(Repository.full_name == bindparam("full_name"))
_BY_NAME_ANY_CASE = (
    select(Repository)
    .where(func.lower(Repository.full_name) == bindparam("full_name"))
    .order_by(Repository.id)
    .limit(1)
)
_FOUND_KEY = "cartridge.repositories_by_name"


def find_by_full_name(session: Session, full_name: str) -> Repository | None:
    """GitHub names are case-insensitive: an exact match (indexed) first, then any case. A
    repository found once is remembered for the rest of the session (a batch of webhook
    deliveries names the same few repositories again and again)."""
    found: dict[str, Repository] = session.info.setdefault(_FOUND_KEY, {})
    repository = found.get(full_name)
    if repository is not None and repository in session:
        return repository
    repository = session.scalars(_BY_NAME, {"full_name": full_name}).first()
    if repository is None:
        repository = session.scalars(_BY_NAME_ANY_CASE, {"full_name": full_name.lower()}).first()
    if repository is not None:
        found[full_name] = repository
    return repository


def list_page(session: Session, *, after: str | None, limit: int) -> list[Repository]:
    """Up to `limit` repositories in name order, after the name `after`."""
    query = select(Repository).order_by(Repository.full_name).limit(limit)
    if after is not None:
        query = query.where(Repository.full_name > after)
    return list(session.scalars(query))
