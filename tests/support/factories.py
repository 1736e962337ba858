"""Fixtures that create rows directly with the models: repositories, builds, pushes and images
(in production the API, the webhook receiver and the workers create them). The root conftest
loads this module as a plugin, so every test can ask for these fixtures by name."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.orm import Session

from app.models import Build, BuildStatus, Image, Push, PushDecision, Repository
from app.models.base import utcnow
from app.statuses.service import record_status

if TYPE_CHECKING:
    from tests.support.registry_cluster import PushedImage

_counter = itertools.count(1)

MakeRepository = Callable[..., Repository]
MakeBuild = Callable[..., Build]
MakePush = Callable[..., Push]
MakeImage = Callable[..., Image]
RecordImage = Callable[..., Image]


def new_sha(prefix: str = "") -> str:
    """A fresh 40-hex SHA, starting with `prefix` when given."""
    body = f"{next(_counter):x}".rjust(40 - len(prefix), "0")
    return (prefix + body)[:40]


@pytest.fixture
def make_repository(session: Session) -> MakeRepository:
    def make(full_name: str = "octo/app", **fields: object) -> Repository:
        values: dict[str, object] = {
            "clone_url": f"https://github.com/{full_name}.git",
            "image_name": full_name.replace("/", "-").lower(),
            "default_branch": "main",
        }
        values.update(fields)
        repository = Repository(full_name=full_name, **values)
        session.add(repository)
        session.commit()
        return repository

    return make


@pytest.fixture
def make_build(session: Session) -> MakeBuild:
    def make(
        repository: Repository,
        sha: str | None = None,
        status: str = "queued",
        *,
        queued_at: datetime | None = None,
        **fields: Any,
    ) -> Build:
        build = Build(
            repository_id=repository.id,
            sha=sha or new_sha(),
            status=status,
            queued_at=queued_at or utcnow(),
            **fields,
        )
        session.add(build)
        session.commit()
        return build

    return make


@pytest.fixture
def make_push(session: Session) -> MakePush:
    def make(
        repository: Repository,
        branch: str | None = "main",
        build: Build | None = None,
        *,
        sha: str | None = None,
        before: str = "0" * 40,
        deleted: bool = False,
        forced: bool = False,
        tag: str | None = None,
        pusher: str = "octocat",
    ) -> Push:
        after = "0" * 40 if deleted else (sha or (build.sha if build else new_sha()))
        ref = f"refs/tags/{tag}" if tag else f"refs/heads/{branch}"
        push = Push(
            repository_id=repository.id,
            ref=ref,
            branch=None if tag else branch,
            tag=tag,
            before_sha=before,
            after_sha=after,
            forced=forced,
            deleted=deleted,
            pusher=pusher,
            build_id=build.id if build else None,
            decision="deleted" if deleted else "built",
        )
        session.add(push)
        session.commit()
        return push

    return make


@pytest.fixture
def make_image(session: Session) -> MakeImage:
    def make(build: Build, name: str = "octo-app", **fields: Any) -> Image:
        values: dict[str, Any] = {
            "build_id": build.id,
            "attempt": build.attempt,
            "name": name,
            "tag": build.sha,
            "manifest_digest": "sha256:" + build.sha.ljust(64, "0")[:64],
            "config_digest": "sha256:" + "c" * 64,
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "size": 1234,
            "layers": [],
            "roles": {"web": "bin/web", ".shell": "/bin/sh -l"},
            "labels": {"org.opencontainers.image.revision": build.sha},
        }
        values.update(fields)
        image = Image(**values)
        session.add(image)
        session.commit()
        return image

    return make


@pytest.fixture
def make_build_with_status(session: Session, make_repository: MakeRepository) -> MakeBuild:
    """A committed build of a fresh SHA (of a fresh repository unless one is given) with its
    initial "Queued" commit status recorded, the way build creation records it."""
    counter = iter(range(1, 10_000))

    def make(repository: Repository | None = None, **fields: object) -> Build:
        number = next(counter)
        repository = repository or make_repository(f"octo/app-{number}")
        build = Build(repository_id=repository.id, sha=f"{number:07x}" + "ab" * 16 + "c", **fields)
        session.add(build)
        session.flush()
        record_status(session, build)
        session.commit()
        return build

    return make


@pytest.fixture
def record_image(session: Session, make_repository: MakeRepository) -> RecordImage:
    """Records the build and image rows for an image pushed to a registry, as the pipeline does
    after a push: in a repository of its own, or in `repository` as a succeeded build pushed to
    `branch`, created `age` ago."""

    def record(
        pushed: PushedImage,
        *,
        repository: Repository | None = None,
        branch: str | None = None,
        age: timedelta | None = None,
    ) -> Image:
        repository = repository or make_repository(f"octo/{uuid.uuid4().hex[:8]}")
        sha = uuid.uuid4().hex + "0" * 8
        status = BuildStatus.SUCCEEDED if branch else BuildStatus.QUEUED
        build = Build(repository_id=repository.id, sha=sha, status=status)
        session.add(build)
        session.flush()
        if branch is not None:
            session.add(
                Push(
                    repository_id=repository.id,
                    ref=f"refs/heads/{branch}",
                    branch=branch,
                    before_sha="0" * 40,
                    after_sha=sha,
                    build_id=build.id,
                    decision=PushDecision.BUILT,
                )
            )
        image = Image(
            build_id=build.id,
            name=pushed.repository,
            tag=pushed.tag,
            manifest_digest=pushed.manifest_digest,
            config_digest=pushed.config_digest,
            media_type=pushed.media_type,
            size=pushed.size,
            layers=pushed.layers,
            created_at=utcnow() - (age or timedelta()),
        )
        session.add(image)
        session.commit()
        return image

    return record
