"""A prune while webhooks arrive, on real PostgreSQL: it loses no live row and blocks no webhook.

The API runs in a process of its own whose every statement has `lock_timeout = 50ms` (set on a
database of this test's own): a webhook that waited more than 50 ms for a lock the prune holds
would fail, and the receiver logs every failed statement, so the bound on locking is checked
exactly, however loaded the machine is. Webhook latencies during the prune are measured and
printed for information (a timing assertion would test the machine, not the locks).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.orm import sessionmaker

from app import migrate
from app.engine import build_engine
from app.row_retention.service import RetentionPolicy, prune
from tests.conftest import REDIS_URL, _admin, _database_url
from tests.support.github import webhook_headers
from tests.support.server import free_port

pytestmark = pytest.mark.e2e

SECRET = "retention-load-test-secret"
OLD_DELIVERIES = 30_000
OLD_OUTBOX = 20_000
OLD_BUILDS = 300
CHUNKS_PER_OLD_LOG = 10
SENDERS = 4


@pytest.fixture
def database() -> Iterator[str]:
    name = f"cartridge_prune_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        url = _database_url(name)
        migrate.upgrade(url)
        _admin(f"ALTER DATABASE \"{name}\" SET lock_timeout = '50ms'")
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(url: str) -> int:
    """Old rows of every kind, and a green build whose log must stay. Returns its id."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    statements = [
        "INSERT INTO repositories (full_name, clone_url, default_branch, image_name,"
        " branch_filters, build_tags, cancel_superseded, created_at, updated_at) VALUES"
        " ('octo/load', 'https://github.com/octo/load.git', 'main', 'octo-load', '[]', false,"
        " true, now(), now())",
        "INSERT INTO webhook_deliveries (guid, event, outcome, received_at)"  # noqa: S608 (integers only)
        f" SELECT 'old-' || g, 'push', 'accepted', now() - interval '40 days'"
        f" FROM generate_series(1, {OLD_DELIVERIES}) g",
        "INSERT INTO outbox (task_name, queue, args, countdown_seconds, created_at,"  # noqa: S608 (integers only)
        " dispatched_at, attempts) SELECT 'cartridge.builds.run', 'nowhere', '[]', 0,"
        f" now() - interval '3 days', now() - interval '3 days', 1"
        f" FROM generate_series(1, {OLD_OUTBOX}) g",
        # Old failed builds on main, each pushed once and with a log; the first is green.
        "INSERT INTO builds (repository_id, sha, status, attempt, lease_retries, queued_at,"  # noqa: S608 (integers only)
        " finished_at, created_at) SELECT 1, md5('old' || g) || substr(md5('x' || g), 1, 8),"
        " CASE WHEN g = 1 THEN 'succeeded' ELSE 'failed' END, 1, 0,"
        " now() - interval '200 days', now() - interval '200 days', now()"
        f" FROM generate_series(1, {OLD_BUILDS}) g",
        "INSERT INTO pushes (repository_id, webhook_delivery_id, ref, branch, before_sha,"
        " after_sha, forced, created, deleted, build_id, decision, received_at)"
        " SELECT 1, b.id, 'refs/heads/main', 'main', repeat('0', 40), b.sha, false, false,"
        " false, b.id, 'built', now() - interval '200 days' FROM builds b ORDER BY b.id",
        'INSERT INTO build_log_chunks (build_id, attempt, "offset", content, created_at)'  # noqa: S608 (integers only)
        " SELECT b.id, 1, c * 1000, repeat('x', 1000), now() FROM builds b,"
        f" generate_series(0, {CHUNKS_PER_OLD_LOG - 1}) c",
    ]
    with psycopg.connect(dsn) as connection:
        for statement in statements:
            connection.execute(statement)  # type: ignore[arg-type]
        green = connection.execute("SELECT min(id) FROM builds").fetchone()
    assert green is not None
    return int(green[0])


def _start_api(url: str, state_dir: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "CARTRIDGE_DATABASE_URL": url,
        "CARTRIDGE_BROKER_URL": REDIS_URL,
        "CARTRIDGE_BUILD_QUEUE": f"builds-prune-{run}",
        "CARTRIDGE_DEFAULT_QUEUE": f"cartridge-prune-{run}",
        "CARTRIDGE_STATE_DIR": str(state_dir),
        "CARTRIDGE_WEBHOOK_SECRET": SECRET,
    }
    command = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the API did not start")


class Load:
    """Senders posting signed pushes (each a new build on one of a few branches) until stopped;
    every delivery's guid, answer and latency is kept with the time it was sent."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.stop = threading.Event()
        self.sent: list[tuple[float, float, str, int]] = []  # (start, seconds, guid, status)
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, args=(n,)) for n in range(SENDERS)]

    def _send(self, sender: int) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            number = 0
            while not self.stop.is_set():
                number += 1
                guid = f"live-{sender}-{number}"
                sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
                body = json.dumps(
                    {
                        "ref": f"refs/heads/branch-{number % 5}",
                        "before": "0" * 40,
                        "after": sha,
                        "repository": {"full_name": "octo/load"},
                        "pusher": {"name": "octocat"},
                    }
                ).encode()
                headers = webhook_headers("push", body, SECRET, guid=guid)
                started = time.perf_counter()
                response = client.post("/webhooks/github", content=body, headers=headers)
                with self._lock:
                    self.sent.append(
                        (started, time.perf_counter() - started, guid, response.status_code)
                    )

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()


def _describe(samples: list[float]) -> str:
    if len(samples) < 2:
        return f"{len(samples)} requests"
    cut = statistics.quantiles(samples, n=100, method="inclusive")
    return (
        f"{len(samples)} requests, p50 {cut[49] * 1000:.1f} ms, p99 {cut[98] * 1000:.1f} ms, "
        f"max {max(samples) * 1000:.1f} ms"
    )


def test_a_prune_during_intake_loses_no_live_row_and_blocks_no_webhook(
    database: str, tmp_path: Path
) -> None:
    green = _fill(database)
    server, base = _start_api(database, tmp_path)
    engine = build_engine(database)
    factory = sessionmaker(engine, expire_on_commit=False)
    policy = RetentionPolicy(
        deliveries=timedelta(days=30),
        outbox=timedelta(hours=24),
        status_posts=timedelta(days=30),
        log_age=timedelta(days=90),
        logs_per_branch=20,
        batch_size=500,
    )
    try:
        with Load(base) as load:
            time.sleep(1.5)  # intake alone first
            prune_started = time.perf_counter()
            report = prune(factory, policy)
            prune_ended = time.perf_counter()
            time.sleep(0.5)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
        engine.dispose()

    during = [s for start, s, _, _ in load.sent if prune_started <= start <= prune_ended]
    before = [s for start, s, _, _ in load.sent if start < prune_started]
    print(
        f"\nprune {prune_ended - prune_started:.2f} s: {report.counts}"
        f"\nwebhooks before the prune: {_describe(before)}"
        f"\nwebhooks during the prune: {_describe(during)}"
    )
    assert len(during) >= 20, "the load did not overlap the prune"
    # No statement of the API waited 50 ms for a lock (it would have failed and been logged).
    assert "lock timeout" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert {status for *_, status in load.sent} == {200}

    # The old rows went, in batches...
    assert report.counts["webhook_deliveries"] == OLD_DELIVERIES
    assert report.counts["outbox"] == OLD_OUTBOX
    assert report.counts["build_logs"] == OLD_BUILDS - 1  # all old, but main's latest green
    assert report.skipped_batches == 0
    # ...and every live row stayed: each delivery of the load, its push and its build.
    dsn = database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as connection:
        guids = {row[0] for row in connection.execute("SELECT guid FROM webhook_deliveries")}
        live_pushes = connection.execute(
            "SELECT count(*) FROM pushes p JOIN webhook_deliveries d"
            " ON d.id = p.webhook_delivery_id JOIN builds b ON b.id = p.build_id"
            " WHERE d.guid LIKE 'live-%'"
        ).fetchone()
        green_chunks = connection.execute(
            "SELECT count(*) FROM build_log_chunks WHERE build_id = %s", (green,)
        ).fetchone()
        undispatched_live = connection.execute(
            "SELECT count(*) FROM outbox WHERE created_at > now() - interval '1 hour'"
        ).fetchone()
    posted = {guid for _, _, guid, _ in load.sent}
    assert guids == posted
    assert live_pushes == (len(posted),)
    assert green_chunks == (CHUNKS_PER_OLD_LOG,)
    assert undispatched_live is not None
    assert undispatched_live[0] >= len(posted)  # every build's job, sent or not, is still there
