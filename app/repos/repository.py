"""Queries on repositories."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Repository


def find_by_full_name(session: Session, full_name: str) -> Repository | None:
    """GitHub names are case-insensitive: an exact match (indexed) first, then any case."""
    repository = session.scalar(select(Repository).where(Repository.full_name == full_name))
    if repository is not None:
        return repository
    return session.scalar(
        select(Repository).where(func.lower(Repository.full_name) == full_name.lower()).limit(1)
    )


def list_page(session: Session, *, after: str | None, limit: int) -> list[Repository]:
    """Up to `limit` repositories in name order, after the name `after`."""
    query = select(Repository).order_by(Repository.full_name).limit(limit)
    if after is not None:
        query = query.where(Repository.full_name > after)
    return list(session.scalars(query))
