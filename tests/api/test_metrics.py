from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from app.models import OutboxMessage, WebhookDelivery
from tests.support.factories import MakeBuild, MakeRepository


def _samples(
    client: TestClient, **headers: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_builds_deliveries_and_pending_jobs(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, session: Session
) -> None:
    repo = make_repository()
    for status in ("queued", "queued", "running", "failed"):
        make_build(repo, status=status)
    session.add_all(
        [
            WebhookDelivery(guid="d1", event="push", outcome="accepted"),
            WebhookDelivery(guid="d2", event="push", outcome="accepted"),
            WebhookDelivery(guid="d3", event="ping", outcome="ignored"),
            OutboxMessage(task_name="t", queue="q", args=[1]),
        ]
    )
    session.commit()

    samples = _samples(client)
    assert samples[("cartridge_database_up", ())] == 1
    assert samples[("cartridge_builds", (("status", "queued"),))] == 2
    assert samples[("cartridge_builds", (("status", "running"),))] == 1
    assert samples[("cartridge_builds", (("status", "failed"),))] == 1
    assert samples[("cartridge_builds", (("status", "succeeded"),))] == 0
    assert samples[("cartridge_webhook_deliveries", (("outcome", "accepted"),))] == 2
    assert samples[("cartridge_webhook_deliveries", (("outcome", "ignored"),))] == 1
    assert samples[("cartridge_outbox_pending", ())] == 1


def test_metrics_count_http_requests_by_route_template(client: TestClient) -> None:
    for build_id in (1, 2, 3):
        client.get(f"/api/v1/builds/{build_id}")
    client.get("/no/such/path")

    samples = _samples(client)
    by_route = (("method", "GET"), ("route", "/api/v1/builds/{build_id}"), ("status", "404"))
    assert samples[("cartridge_http_requests_total", by_route)] == 3
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert samples[("cartridge_http_requests_total", unmatched)] == 1
    latency = (("method", "GET"), ("route", "/api/v1/builds/{build_id}"))
    assert samples[("cartridge_http_request_duration_seconds_count", latency)] == 3


@pytest.mark.usefixtures("reads_need_token")
def test_metrics_need_a_token_when_reads_are_protected(
    client: TestClient, auth: dict[str, str]
) -> None:
    assert client.get("/metrics").status_code == 401
    assert _samples(client, **auth)[("cartridge_database_up", ())] == 1


def test_backlog_gauges_say_what_waits_and_since_when(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, session: Session
) -> None:
    from datetime import timedelta

    from app.models import Registry, StatusPost
    from app.models.base import utcnow

    repo = make_repository()
    make_build(repo, status="queued", queued_at=utcnow() - timedelta(minutes=5))
    make_build(repo, status="queued")
    make_build(repo, status="running", build_host="host-2")
    make_build(repo, status="running", build_host="host-2")
    failed = make_build(repo, status="failed")
    session.add_all(
        [
            OutboxMessage(
                task_name="t", queue="q", args=[1], created_at=utcnow() - timedelta(seconds=60)
            ),
            Registry(name="r1", url="10.0.0.1:5000", healthy=True),
            Registry(name="r2", url="10.0.0.2:5000", healthy=False, required=False),
            *[
                StatusPost(
                    build_id=failed.id,
                    attempt=1,
                    state="failure",
                    context="cartridge/build",
                    description="x",
                    send_state=send_state,
                    response_code=code,
                )
                for send_state, code in (("queued", 429), ("queued", 429), ("failed", 422))
            ],
        ]
    )
    session.commit()

    samples = _samples(client)
    assert 299 < samples[("cartridge_oldest_queued_build_age_seconds", ())] < 400
    assert samples[("cartridge_outbox_oldest_pending_age_seconds", ())] >= 59
    assert samples[("cartridge_builds_running", (("host", "host-2"),))] == 2
    assert samples[("cartridge_status_posts", (("reason", "429"), ("state", "queued")))] == 2
    assert samples[("cartridge_status_posts", (("reason", "422"), ("state", "failed")))] == 1
    assert samples[("cartridge_registry_healthy", (("registry", "r1"), ("required", "true")))] == 1
    assert samples[("cartridge_registry_healthy", (("registry", "r2"), ("required", "false")))] == 0
