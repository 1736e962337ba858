"""Gauges of what is waiting, read from the database at scrape time: the questions asked at
3am (is anything stuck? where? since when?)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app.db import get_session_factory
from app.models import Build, BuildStatus, OutboxMessage, Registry, StatusPost
from app.models.base import utcnow
from app.models.status_post import SendState


class BacklogCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        try:
            with get_session_factory()() as session:
                oldest_queued = session.scalar(
                    select(func.min(Build.queued_at)).where(Build.status == BuildStatus.QUEUED)
                )
                running = session.execute(
                    select(Build.build_host, func.count())
                    .where(Build.status == BuildStatus.RUNNING)
                    .group_by(Build.build_host)
                ).all()
                oldest_outbox = session.scalar(
                    select(func.min(OutboxMessage.created_at)).where(
                        OutboxMessage.dispatched_at.is_(None)
                    )
                )
                posts = session.execute(
                    select(StatusPost.send_state, StatusPost.response_code, func.count())
                    .where(StatusPost.send_state.in_([SendState.QUEUED, SendState.FAILED]))
                    .group_by(StatusPost.send_state, StatusPost.response_code)
                ).all()
                replicas = session.execute(
                    select(Registry.name, Registry.healthy, Registry.required)
                ).all()
        except SQLAlchemyError:
            return  # cartridge_database_up says so
        now = utcnow()
        yield GaugeMetricFamily(
            "cartridge_oldest_queued_build_age_seconds",
            "How long the oldest queued build has waited for a worker (0: none waits).",
            value=_age(now, oldest_queued),
        )
        yield GaugeMetricFamily(
            "cartridge_outbox_oldest_pending_age_seconds",
            "How long the oldest job not yet sent to the broker has waited (0: none).",
            value=_age(now, oldest_outbox),
        )
        by_host = GaugeMetricFamily(
            "cartridge_builds_running", "Running builds by build host.", labels=["host"]
        )
        for host, count in sorted(running, key=lambda row: row[0] or ""):
            by_host.add_metric([host or "unknown"], count)
        yield by_host
        statuses = GaugeMetricFamily(
            "cartridge_status_posts",
            "Commit statuses waiting to be sent (queued) or given up on (failed), by GitHub's "
            "last answer (`none`: no answer, e.g. a timeout, or not tried yet).",
            labels=["state", "reason"],
        )
        for state, code, count in posts:
            statuses.add_metric([str(state), str(code) if code else "none"], count)
        yield statuses
        healthy = GaugeMetricFamily(
            "cartridge_registry_healthy",
            "1 when the replica answered its last health check.",
            labels=["registry", "required"],
        )
        for name, is_healthy, required in replicas:
            healthy.add_metric([name, "true" if required else "false"], 1 if is_healthy else 0)
        yield healthy


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())
