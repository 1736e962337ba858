"""Delivering signed webhooks to the app, and reading what they recorded."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Build, OutboxMessage, Push, WebhookDelivery
from app.outbox.relay import reset_relay
from tests.conftest import REDIS_URL, RUN_ID, WEBHOOK_SECRET
from tests.support.github import webhook_headers


class Deliver(Protocol):
    def __call__(
        self,
        event: str,
        payload: bytes | dict[str, Any],
        *,
        secret: str | None = ...,
        guid: str | None = ...,
        content_type: str = ...,
    ) -> httpx.Response: ...


@pytest.fixture
def deliver(client: TestClient) -> Deliver:
    def send(
        event: str,
        payload: bytes | dict[str, Any],
        *,
        secret: str | None = WEBHOOK_SECRET,
        guid: str | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = webhook_headers(event, body, secret, guid=guid, content_type=content_type)
        return client.post("/webhooks/github", content=body, headers=headers)

    return send


@pytest.fixture
def counts(session: Session) -> Callable[[], dict[str, int]]:
    def count() -> dict[str, int]:
        session.expire_all()
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (WebhookDelivery, Push, Build, OutboxMessage)
        }

    return count


@pytest.fixture(autouse=True)
def _stop_relay_afterwards() -> Iterator[None]:
    # The relay thread would otherwise outlive the test and its database.
    yield
    reset_relay()


@pytest.fixture(scope="session", autouse=True)
def _drop_build_queue_afterwards() -> Iterator[None]:
    yield
    # The relay publishes the builds these tests queue; the per-run queue goes with the run.
    queue = f"builds-{RUN_ID}"
    connection = redis.Redis.from_url(REDIS_URL)
    connection.delete(queue, f"_kombu.binding.{queue}")
