"""Fixtures that create builds, pushes and images directly with the models (in production the
webhook receiver and the workers create them). Import the fixtures a test module needs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Build, Image, Push, Repository
from app.models.base import utcnow

_counter = itertools.count(1)

MakeRepository = Callable[..., Repository]
MakeBuild = Callable[..., Build]
MakePush = Callable[..., Push]
MakeImage = Callable[..., Image]


def new_sha(prefix: str = "") -> str:
    """A fresh 40-hex SHA, starting with `prefix` when given."""
    body = f"{next(_counter):x}".rjust(40 - len(prefix), "0")
    return (prefix + body)[:40]


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
def reads_need_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CARTRIDGE_READ_REQUIRES_TOKEN", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("CARTRIDGE_READ_REQUIRES_TOKEN")
    get_settings.cache_clear()
