"""Row retention: which rows are deleted, and how, so that tables do not grow forever.

- webhook deliveries: received more than `CARTRIDGE_ROW_RETENTION_DELIVERIES_DAYS` (30) ago;
- outbox rows: dispatched more than `CARTRIDGE_ROW_RETENTION_OUTBOX_HOURS` (24) ago (never before);
- status posts: sent or skipped more than `CARTRIDGE_ROW_RETENTION_STATUS_POSTS_DAYS` (30) ago,
  except each build's last sent one (the sender compares new statuses with it);
- build logs: of builds that finished more than `CARTRIDGE_ROW_RETENTION_LOG_DAYS` (90) ago, or that
  are beyond the last `CARTRIDGE_ROW_RETENTION_LOGS_PER_BRANCH` (50) builds of every branch they are
  on; never the logs of a branch's latest green, never those of a build still running.

0 keeps a kind forever. Rows go in batches of `CARTRIDGE_ROW_RETENTION_BATCH_SIZE`, each batch in a
transaction of its own that locks only the rows it deletes (SKIP LOCKED, and a lock timeout), so
a prune never holds locks for long nor waits behind the webhook receiver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import BuildLogChunk, OutboxMessage, StatusPost, WebhookDelivery
from app.models.base import utcnow
from app.row_retention import queries

log = logging.getLogger(__name__)
# A prune waits at most this long for a lock; past it the batch is left for the next run.
LOCK_TIMEOUT = "500ms"
# Builds examined per query of the log policy.
BUILDS_PER_QUERY = 200


@dataclass(frozen=True)
class RetentionPolicy:
    deliveries: timedelta | None
    outbox: timedelta | None
    status_posts: timedelta | None
    log_age: timedelta | None
    logs_per_branch: int
    batch_size: int

    @classmethod
    def of(cls, settings: Settings) -> RetentionPolicy:
        def days(value: float) -> timedelta | None:
            return timedelta(days=value) if value > 0 else None

        hours = settings.row_retention_outbox_hours
        return cls(
            deliveries=days(settings.row_retention_deliveries_days),
            outbox=timedelta(hours=hours) if hours > 0 else None,
            status_posts=days(settings.row_retention_status_posts_days),
            log_age=days(settings.row_retention_log_days),
            logs_per_branch=settings.row_retention_logs_per_branch,
            batch_size=settings.row_retention_batch_size,
        )


@dataclass
class PruneReport:
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    skipped_batches: int = 0  # batches that met a lock and were left for the next run

    def add(self, kind: str, count: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + count


SessionFactory = Callable[[], Session]


@contextmanager
def _unit(factory: SessionFactory) -> Iterator[Session]:
    """One short transaction, with a lock timeout on PostgreSQL."""
    with factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        yield session
        session.commit()


class _Pruner:
    def __init__(self, factory: SessionFactory, policy: RetentionPolicy, dry_run: bool) -> None:
        self.factory = factory
        self.policy = policy
        self.report = PruneReport(dry_run=dry_run)
        self.now = utcnow()

    def rows(
        self,
        kind: str,
        model: type[WebhookDelivery] | type[OutboxMessage] | type[StatusPost],
        select_batch: Callable[..., list[int]],
        age: timedelta | None,
    ) -> None:
        if age is None:
            return
        cutoff, after = self.now - age, 0
        while True:
            try:
                with _unit(self.factory) as session:
                    ids = select_batch(
                        session, cutoff, after, self.policy.batch_size, lock=not self.report.dry_run
                    )
                    if ids and not self.report.dry_run:
                        session.execute(delete(model).where(model.id.in_(ids)))
            except OperationalError as exc:
                if "lock" not in str(exc.orig).lower():
                    raise
                self.report.skipped_batches += 1
                log.info("retention: a %s batch met a lock; left for the next run", kind)
                return
            self.report.add(kind, len(ids))
            if len(ids) < self.policy.batch_size:
                return
            after = ids[-1]

    def logs(self) -> None:
        policy = self.policy
        finished_before = self.now - policy.log_age if policy.log_age else None
        if finished_before is None and policy.logs_per_branch <= 0:
            return
        with self.factory() as session:
            pushes_up_to = queries.newest_push_id(session)
        after = 0
        while True:
            with self.factory() as session:
                builds = queries.builds_with_prunable_logs(
                    session,
                    finished_before=finished_before,
                    builds_per_branch=policy.logs_per_branch,
                    after=after,
                    limit=BUILDS_PER_QUERY,
                )
            for build_id, attempt in builds:
                chunks = self._chunks(build_id, attempt, pushes_up_to)
                if chunks:
                    self.report.add("build_logs", 1)
                    self.report.add("build_log_chunks", chunks)
            if len(builds) < BUILDS_PER_QUERY:
                return
            after = builds[-1][0]

    def _chunks(self, build_id: int, attempt: int, pushes_up_to: int) -> int:
        total, after = 0, 0
        while True:
            try:
                with _unit(self.factory) as session:
                    ids = queries.log_chunks_of(
                        session,
                        build_id,
                        attempt,
                        pushes_up_to,
                        after,
                        self.policy.batch_size,
                        lock=not self.report.dry_run,
                    )
                    if ids and not self.report.dry_run:
                        session.execute(delete(BuildLogChunk).where(BuildLogChunk.id.in_(ids)))
            except OperationalError as exc:
                if "lock" not in str(exc.orig).lower():
                    raise
                self.report.skipped_batches += 1
                return total
            total += len(ids)
            if len(ids) < self.policy.batch_size:
                return total
            after = ids[-1]


def prune(
    factory: SessionFactory, policy: RetentionPolicy, *, dry_run: bool = False
) -> PruneReport:
    """Deletes (or with `dry_run`, counts) what the policy lets go, kind by kind."""
    pruner = _Pruner(factory, policy, dry_run)
    pruner.rows("webhook_deliveries", WebhookDelivery, queries.old_deliveries, policy.deliveries)
    pruner.rows("outbox", OutboxMessage, queries.dispatched_outbox, policy.outbox)
    pruner.rows("status_posts", StatusPost, queries.sent_status_posts, policy.status_posts)
    pruner.logs()
    for kind in ("webhook_deliveries", "outbox", "status_posts", "build_logs", "build_log_chunks"):
        pruner.report.counts.setdefault(kind, 0)
    return pruner.report


def cutoff_description(policy: RetentionPolicy) -> dict[str, str]:
    """The policy in words, for the CLI."""
    never = "kept forever"

    def age(value: timedelta | None, what: str) -> str:
        if not value:
            return never
        hours = value.total_seconds() / 3600
        span = f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} hours"
        return f"{what} more than {span} ago"

    per_branch = (
        f"beyond the last {policy.logs_per_branch} builds of every branch"
        if policy.logs_per_branch > 0
        else ""
    )
    log_rule = " or ".join(
        part
        for part in (age(policy.log_age, "finished") if policy.log_age else "", per_branch)
        if part
    )
    return {
        "webhook_deliveries": age(policy.deliveries, "received"),
        "outbox": age(policy.outbox, "dispatched"),
        "status_posts": age(policy.status_posts, "sent or skipped"),
        "build_logs": (log_rule + ", except latest greens") if log_rule else never,
    }
