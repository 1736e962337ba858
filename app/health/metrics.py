"""Prometheus metrics at `/metrics`: what the database says (builds, deliveries, outbox) at
scrape time, and the HTTP traffic this process served."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import ReadAccess
from app.db import get_session_factory
from app.health.backlog import BacklogCollector
from app.models import (
    Build,
    BuildStatus,
    DeletionState,
    HookRedelivery,
    ImageDeletion,
    OutboxMessage,
    ProxyHost,
    Push,
    PushSource,
    ReconcilerRun,
    WebhookDelivery,
)

router = APIRouter(tags=["health"])

# Requests that matched no route share one label, so scanners cannot inflate the series count.
UNMATCHED_ROUTE = "unmatched"


class DatabaseCollector(Collector):
    """Counts read from the database on each scrape, so every API process reports the same."""

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("cartridge_database_up", "Whether the database answered the scrape.")
        try:
            with get_session_factory()() as session:
                builds = dict(
                    session.execute(select(Build.status, func.count()).group_by(Build.status)).all()
                )
                deliveries = dict(
                    session.execute(
                        select(WebhookDelivery.outcome, func.count()).group_by(
                            WebhookDelivery.outcome
                        )
                    ).all()
                )
                pending = session.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.dispatched_at.is_(None))
                )
                recovered = session.scalar(
                    select(func.count())
                    .select_from(Push)
                    .where(Push.source == PushSource.RECONCILER.value)
                )
                redelivery_requests = session.scalar(select(func.sum(HookRedelivery.requests)))
                last_pass = session.scalar(select(func.max(ReconcilerRun.finished_at)))
                deletions = dict(
                    session.execute(
                        select(ImageDeletion.state, func.count()).group_by(ImageDeletion.state)
                    ).all()
                )
                proxies = session.execute(
                    select(ProxyHost.host_name, ProxyHost.reloads, ProxyHost.last_error)
                ).all()
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_status = GaugeMetricFamily(
            "cartridge_builds", "Builds by current status.", labels=["status"]
        )
        for status in BuildStatus:
            by_status.add_metric([status.value], builds.get(status, 0))
        yield by_status
        by_outcome = GaugeMetricFamily(
            "cartridge_webhook_deliveries",
            "Recorded webhook deliveries by outcome.",
            labels=["outcome"],
        )
        for outcome, count in sorted(deliveries.items()):
            by_outcome.add_metric([outcome], count)
        yield by_outcome
        yield GaugeMetricFamily(
            "cartridge_outbox_pending",
            "Jobs recorded but not yet sent to the broker.",
            value=pending or 0,
        )
        yield CounterMetricFamily(
            "cartridge_recovered_pushes",
            "Pushes the reconciler recorded because their webhook never arrived.",
            value=recovered or 0,
        )
        yield CounterMetricFamily(
            "cartridge_hook_redelivery_requests",
            "Redeliveries of failed GitHub App hook deliveries asked of GitHub.",
            value=redelivery_requests or 0,
        )
        yield GaugeMetricFamily(
            "cartridge_reconciler_last_pass_timestamp_seconds",
            "When the last reconciler pass finished (0: never).",
            value=last_pass.timestamp() if last_pass else 0,
        )
        by_state = GaugeMetricFamily(
            "cartridge_image_deletions",
            "Deletions of images from replicas by state (refused: deletes disabled there).",
            labels=["state"],
        )
        for state in DeletionState:
            by_state.add_metric([state.value], deletions.get(state, 0))
        yield by_state
        yield from _proxy_metrics(proxies)


def _proxy_metrics(proxies: Iterable[Any]) -> Iterable[Metric]:
    reloads = CounterMetricFamily(
        "cartridge_proxy_config_reloads",
        "Configs the pull proxy on each host loaded (started or reloaded nginx with).",
        labels=["host"],
    )
    refused = GaugeMetricFamily(
        "cartridge_proxy_config_refused",
        "1 while the newest config of a proxy host was refused by nginx and an older one runs.",
        labels=["host"],
    )
    for host_name, count, last_error in proxies:
        reloads.add_metric([host_name], count)
        refused.add_metric([host_name], 1 if last_error else 0)
    yield reloads
    yield refused


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "cartridge_http_requests",
            "HTTP requests served, by route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "cartridge_http_request_duration_seconds",
            "Time until the response headers were sent (streams count until they start).",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        template = route_template(scope)
        method = scope.get("method", "")
        self.requests.labels(method, template, str(status)).inc()
        self.latency.labels(method, template).observe(seconds)


def route_template(scope: Scope) -> str:
    """The matched route's path template with the prefix it was included under, e.g.
    `/api/v1/builds/{build_id}`. Routes may record only their own part of the path, so the
    prefix is the literal part of the request path before where the route's pattern matches."""
    route = scope.get("route")
    pattern = getattr(route, "path_regex", None)
    template = getattr(route, "path", None)
    if pattern is None or template is None:
        return UNMATCHED_ROUTE
    path: str = scope.get("path", "")
    for start in (i for i, char in enumerate(path) if char == "/"):
        if pattern.match(path[start:]):
            return path[:start] + template
    return str(template)


class HttpMetricsMiddleware:
    """Plain ASGI (not BaseHTTPMiddleware), so streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        observed = False

        async def send_and_observe(message: Message) -> None:
            nonlocal observed
            if message["type"] == "http.response.start" and not observed:
                observed = True
                self.metrics.observe(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_and_observe)
        finally:
            if not observed:
                self.metrics.observe(scope, 500, time.perf_counter() - started)


@router.get("/metrics", response_class=Response)
def metrics(request: Request, _access: ReadAccess) -> Response:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI) -> None:
    # One registry per app: tests create many apps in one process.
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    registry.register(BacklogCollector())
    app.state.metrics_registry = registry
    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(registry))
    app.include_router(router)
