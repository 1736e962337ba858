"""Registering and configuring repositories."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, ErrorCode, NotFound
from app.models import Repository
from app.models.base import utcnow
from app.repos import queries
from app.repos.schemas import RepositoryCreate, RepositoryUpdate, default_image_name


def get(session: Session, full_name: str) -> Repository:
    repository = queries.find_by_full_name(session, full_name)
    if repository is None:
        raise NotFound(
            f"No repository {full_name} is registered.",
            code=ErrorCode.REPOSITORY_NOT_FOUND,
            repository=full_name,
        )
    return repository


def register(session: Session, data: RepositoryCreate) -> Repository:
    if queries.find_by_full_name(session, data.full_name) is not None:
        raise _already_registered(data.full_name)
    repository = Repository(
        full_name=data.full_name,
        clone_url=data.clone_url or f"https://github.com/{data.full_name}.git",
        default_branch=data.default_branch,
        image_name=data.image_name or default_image_name(data.full_name),
        webhook_secret=data.webhook_secret.get_secret_value() if data.webhook_secret else None,
        branch_filters=list(data.branch_filters),
        build_tags=data.build_tags,
        base_image=data.base_image,
        cancel_superseded=data.cancel_superseded,
        protected_branches=data.protected_branches,
        build_limits=data.build_limits.stored() if data.build_limits else None,
    )
    try:
        # A concurrent registration of the same name (or a webhook auto-registering it) wins
        # the unique constraint; the savepoint keeps the caller's transaction usable.
        with session.begin_nested():
            session.add(repository)
            session.flush()
    except IntegrityError as exc:
        raise _already_registered(data.full_name) from exc
    return repository


def configure(session: Session, repository: Repository, data: RepositoryUpdate) -> Repository:
    for field, value in data.changes().items():
        if field == "build_limits":
            limits = data.build_limits
            value = limits.merged_into(repository.build_limits) if limits else None
        setattr(repository, field, value)
    repository.updated_at = utcnow()
    session.flush()
    return repository


def _already_registered(full_name: str) -> Conflict:
    return Conflict(
        f"Repository {full_name} is already registered.",
        code=ErrorCode.REPOSITORY_EXISTS,
        repository=full_name,
    )
