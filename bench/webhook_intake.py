"""Webhook intake: signed push deliveries per second and latency, against a bare endpoint.

Starts one real uvicorn server (its own PostgreSQL database, Redis as the broker) serving both the
Cartridge app and a bare FastAPI endpoint that only reads the body and answers 200. Sends the same
bytes to both (a signed push delivery, unique delivery id and SHA each) at increasing concurrency
over keep-alive loopback connections, then at a fixed offered rate. Prints a Markdown report.

    python3 bench/webhook_intake.py [--workers 1] [--concurrency 1,8,32,64] [--rate 200]

Needs PostgreSQL (`--admin-dsn`, trust auth) and Redis (`--redis-url`) on loopback. Creates and
drops its database and Redis keys; every figure is from one run on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request, Response

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.config import get_settings  # noqa: E402
from app.errors import Unauthorized  # noqa: E402
from app.webhooks.router import _capped_body  # noqa: E402
from app.webhooks.schemas import DeliveryOutcome, DeliveryResult, PushEvent  # noqa: E402
from app.webhooks.signature import signature_matches  # noqa: E402

WEBHOOK_PATH = "/webhooks/github"
BARE_PATH = "/bench/bare"
CHECKED_PATH = "/bench/checked"
SECRET = "bench-webhook-secret-0123456789"
REPOSITORY = "bench/app"
# Pushes cycle through this many branches, so (no worker runs) most supersede a queued build;
# 0 gives every push a branch of its own, so nothing is superseded.
BRANCHES = 50


def bench_app() -> Any:
    """The server's app factory: Cartridge plus the bare endpoint and the checked-only one, in
    one process."""
    from app.main import create_app

    app = create_app()

    @app.post(BARE_PATH)
    async def bare(request: Request) -> Response:
        await request.body()
        return Response(b'{"ok":true}', media_type="application/json")

    @app.post(CHECKED_PATH, response_model=DeliveryResult)
    async def checked(
        request: Request, body: Annotated[bytes, Depends(_capped_body)]
    ) -> DeliveryResult:
        # What the receiver does before it touches the database: signature, headers, payload.
        secret = get_settings().webhook_secret
        signature = request.headers.get("x-hub-signature-256", "")
        if secret is None or not signature_matches(body, signature, secret.get_secret_value()):
            raise Unauthorized("bad signature")
        event = PushEvent.model_validate_json(body)
        return DeliveryResult(
            delivery=request.headers["x-github-delivery"],
            event=request.headers["x-github-event"],
            outcome=DeliveryOutcome.ACCEPTED,
            detail=None,
            repository=event.repository.full_name,
        )

    return app


# ---------------------------------------------------------------------------------------------
# Requests


def push_body(index: int, run_id: str, branches: int = BRANCHES) -> bytes:
    """A push payload of realistic size (three commits), unique SHA, one of `branches`."""
    sha = hashlib.sha1(f"{run_id}-{index}".encode()).hexdigest()  # noqa: S324 (a commit id)
    before = hashlib.sha1(f"{run_id}-{index}-before".encode()).hexdigest()  # noqa: S324
    commit = {
        "id": sha,
        "tree_id": "b" * 40,
        "distinct": True,
        "message": "Make the thing faster\n\nA longer description of the change, as usual.",
        "timestamp": "2026-11-27T05:00:00Z",
        "url": f"https://github.com/{REPOSITORY}/commit/{sha}",
        "author": {"name": "Octo Cat", "email": "octo@example.com", "username": "octocat"},
        "committer": {"name": "Octo Cat", "email": "octo@example.com", "username": "octocat"},
        "added": ["app/new_file.py"],
        "removed": [],
        "modified": ["README.md", "app/main.py", "container/compile"],
    }
    payload = {
        "ref": f"refs/heads/feature/{index % branches if branches else index}",
        "before": before,
        "after": sha,
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/{REPOSITORY}/compare/{before[:12]}...{sha[:12]}",
        "commits": [commit, commit, commit],
        "head_commit": commit,
        "repository": {
            "id": 1,
            "name": "app",
            "full_name": REPOSITORY,
            "private": True,
            "owner": {"login": "bench", "id": 2, "type": "Organization"},
            "html_url": f"https://github.com/{REPOSITORY}",
            "clone_url": f"https://github.com/{REPOSITORY}.git",
            "default_branch": "main",
            "pushed_at": 1795000000,
            "created_at": 1700000000,
        },
        "pusher": {"name": "octocat", "email": "octo@example.com"},
        "sender": {"login": "octocat", "id": 2, "type": "User"},
    }
    return json.dumps(payload).encode()


def http_request(path: str, port: int, body: bytes) -> bytes:
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "User-Agent: GitHub-Hookshot/bench\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "X-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: {uuid.uuid4()}\r\n"
        "X-GitHub-Hook-ID: 1\r\n"
        f"X-Hub-Signature-256: {signature}\r\n"
        "\r\n"
    )
    return head.encode() + body


class RequestSource:
    """Pre-built requests, so the client spends no time on JSON or HMAC while measuring."""

    def __init__(self, path: str, port: int, run_id: str, branches: int = BRANCHES) -> None:
        self.path, self.port, self.run_id, self.branches = path, port, run_id, branches
        self.sent = 0
        self._template = http_request(path, port, push_body(0, run_id, branches))

    def build(self, count: int) -> list[bytes]:
        if self.path in (BARE_PATH, CHECKED_PATH):
            return [self._template] * count
        start, self.sent = self.sent, self.sent + count
        return [
            http_request(self.path, self.port, push_body(i, self.run_id, self.branches))
            for i in range(start, start + count)
        ]


# ---------------------------------------------------------------------------------------------
# A small keep-alive HTTP/1.1 client


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


@dataclass
class Result:
    label: str
    concurrency: int | str
    completed: int
    errors: int
    elapsed: float
    latencies: list[float]
    server_cpu: float = math.nan  # CPU seconds used by the uvicorn process(es) in this phase
    database_cpu: float = math.nan  # ... and by the PostgreSQL backends of the bench database

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000

    def row(self) -> str:
        per_request = 1000 / self.completed if self.completed else math.nan
        return (
            f"| {self.label} | {self.concurrency} | {self.completed} | {self.errors} | "
            f"{self.rate:.0f} | {self.percentile(0.5):.1f} | {self.percentile(0.99):.1f} | "
            f"{max(self.latencies, default=math.nan) * 1000:.1f} | "
            f"{self.server_cpu * per_request:.2f} | {self.database_cpu * per_request:.2f} |"
        )


class CpuMeter:
    """CPU time of the server's processes and of the bench database's PostgreSQL backends, read
    from /proc: unlike rates and latencies, it hardly depends on what else the machine runs."""

    def __init__(self, server_group: int, admin_dsn: str, database: str) -> None:
        self.server_group, self.admin_dsn, self.database = server_group, admin_dsn, database
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _cpu(self, pid: int) -> tuple[int, float]:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # After the command name: state, ppid, pgrp, ... utime (12th), stime (13th).
        return int(fields[2]), (int(fields[11]) + int(fields[12])) / self.ticks

    def snapshot(self) -> dict[str, dict[int, float]]:
        import psycopg

        server: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    group, seconds = self._cpu(int(entry))
                    if group == self.server_group:
                        server[int(entry)] = seconds
        with psycopg.connect(self.admin_dsn, autocommit=True) as connection:
            pids = [
                row[0]
                for row in connection.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
                )
            ]
        database: dict[int, float] = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                database[pid] = self._cpu(pid)[1]
        return {"server": server, "database": database}

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds between two snapshots. A process that started in between counts from zero;
        one that exited in between is missed (the pool closes overflow connections), so the
        database figure is a lower bound."""
        return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


async def closed_loop(
    port: int, requests: list[bytes], concurrency: int, seconds: float, label: str
) -> Result:
    """`concurrency` clients, each sending its next request as soon as the last one answered."""
    connections = [await Connection.open(port) for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    pending = iter(requests)
    start = time.perf_counter()
    deadline = start + seconds

    async def client(connection: Connection) -> None:
        nonlocal errors
        for request in pending:
            began = time.perf_counter()
            status = await connection.send(request)
            latencies.append(time.perf_counter() - began)
            if status >= 300:
                errors += 1
            if began > deadline:
                return

    await asyncio.gather(*(client(connection) for connection in connections))
    elapsed = time.perf_counter() - start
    for connection in connections:
        connection.close()
    return Result(label, concurrency, len(latencies), errors, elapsed, latencies)


async def open_loop(
    port: int, requests: list[bytes], rate: float, connections: int, label: str
) -> Result:
    """Requests offered at a fixed rate whatever the answers, over at most `connections`
    connections; latency counts from the moment a request was due, so queueing (in the server
    or waiting for a free connection) is never hidden."""
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.2

    async def one(index: int, request: bytes) -> None:
        nonlocal errors
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        connection = await idle.get()
        status = await connection.send(request)
        latencies.append(time.perf_counter() - due)
        if status >= 300:
            errors += 1
        idle.put_nowait(connection)

    await asyncio.gather(*(one(i, request) for i, request in enumerate(requests)))
    elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().close()
    return Result(label, f"{rate:.0f}/s offered", len(latencies), errors, elapsed, latencies)


# ---------------------------------------------------------------------------------------------
# The environment: database, broker, server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def bench_database(admin_dsn: str, run_id: str) -> Iterator[str]:
    import psycopg

    from app import migrate

    name = f"cartridge_bench_{run_id}"
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def register_repository(database_url: str) -> None:
    from sqlalchemy.orm import Session

    from app.engine import build_engine
    from app.models import Repository

    engine = build_engine(database_url)
    with Session(engine) as session:
        session.add(
            Repository(
                full_name=REPOSITORY,
                clone_url=f"https://github.com/{REPOSITORY}.git",
                image_name="bench-app",
            )
        )
        session.commit()
    engine.dispose()


def database_latency(admin_dsn: str, database_url: str) -> str:
    """Round-trip and commit latency of this PostgreSQL right now: context for the figures."""
    import psycopg

    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + database_url.rsplit("/", 1)[1]
    round_trips, commits = [], []
    with psycopg.connect(dsn) as connection:
        connection.execute("CREATE TABLE bench_probe (x int)")
        connection.commit()
        for _ in range(300):
            began = time.perf_counter()
            connection.execute("SELECT 1").fetchone()
            round_trips.append(time.perf_counter() - began)
            connection.execute("INSERT INTO bench_probe VALUES (1)")
            began = time.perf_counter()
            connection.commit()
            commits.append(time.perf_counter() - began)
        connection.execute("DROP TABLE bench_probe")
        connection.commit()
    probe = Result("probe", 1, 0, 0, 0, round_trips)
    commit = Result("probe", 1, 0, 0, 0, commits)
    return (
        f"PostgreSQL round trip p50 {probe.percentile(0.5):.2f} ms, p99 "
        f"{probe.percentile(0.99):.2f} ms; commit p50 {commit.percentile(0.5):.2f} ms, p99 "
        f"{commit.percentile(0.99):.2f} ms; load average {os.getloadavg()[0]:.1f}"
    )


def database_counts(database_url: str) -> dict[str, int]:
    from sqlalchemy import text

    from app.engine import build_engine

    engine = build_engine(database_url)
    counts = {}
    with engine.connect() as connection:
        for label, sql in {
            "deliveries": "SELECT count(*) FROM webhook_deliveries",
            "pushes": "SELECT count(*) FROM pushes",
            "builds": "SELECT count(*) FROM builds",
            "cancelled as superseded": "SELECT count(*) FROM builds WHERE status = 'cancelled'",
            "outbox rows": "SELECT count(*) FROM outbox",
            "outbox rows not yet dispatched": (
                "SELECT count(*) FROM outbox WHERE dispatched_at IS NULL"
            ),
        }.items():
            counts[label] = int(connection.execute(text(sql)).scalar_one())
    engine.dispose()
    return counts


@contextlib.contextmanager
def server(env: dict[str, str], workers: int) -> Iterator[tuple[int, int]]:
    """Runs uvicorn in its own process group; yields its port and the group id."""
    import httpx

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.webhook_intake:bench_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        yield port, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# ---------------------------------------------------------------------------------------------


async def measure(
    args: argparse.Namespace, port: int, run_id: str, meter: CpuMeter
) -> list[Result]:
    async def metered(phase: Any) -> Result:
        before = meter.snapshot()
        result: Result = await phase
        after = meter.snapshot()
        result.server_cpu = meter.used(before["server"], after["server"])
        result.database_cpu = meter.used(before["database"], after["database"])
        print(result.row(), flush=True)
        return result

    endpoints = (
        ("bare endpoint", RequestSource(BARE_PATH, port, run_id, args.branches)),
        ("checked only", RequestSource(CHECKED_PATH, port, run_id, args.branches)),
        ("webhook", RequestSource(WEBHOOK_PATH, port, run_id, args.branches)),
    )
    bare, webhook = endpoints[0][1], endpoints[2][1]
    results: list[Result] = []
    # Warm-up: connections, pools, caches, the relay thread.
    for _, source in endpoints:
        await closed_loop(port, source.build(args.warmup), 8, 30, "warm-up")
    for concurrency in args.concurrency:
        for label, source in endpoints:
            requests = source.build(args.requests)
            phase = closed_loop(port, requests, concurrency, args.seconds, label)
            results.append(await metered(phase))
            await asyncio.sleep(args.pause)
    count = int(args.rate * args.rate_seconds)
    for label, source in (("bare endpoint", bare), ("webhook", webhook)):
        phase = open_loop(port, source.build(count), args.rate, 64, label)
        results.append(await metered(phase))
        await asyncio.sleep(args.pause)
    return results


TABLE_HEAD = (
    "| endpoint | concurrency | requests | non-2xx | req/s | p50 ms | p99 ms | max ms "
    "| server CPU ms/req | PostgreSQL CPU ms/req |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def report(args: argparse.Namespace, results: list[Result], counts: dict[str, int]) -> str:
    lines = [
        TABLE_HEAD,
        *(result.row() for result in results),
        "",
    ]
    closed = [result for result in results if isinstance(result.concurrency, int)]
    best_bare = max(r.rate for r in closed if r.label == "bare endpoint")
    best_checked = max(r.rate for r in closed if r.label == "checked only")
    best_webhook = max(r.rate for r in closed if r.label == "webhook")
    lines.append(
        f"Saturation: webhook {best_webhook:.0f}/s vs bare {best_bare:.0f}/s "
        f"= {best_webhook / best_bare:.2f}x (best level of each); checked only "
        f"{best_checked:.0f}/s = {best_checked / best_bare:.2f}x"
    )
    for concurrency in args.concurrency:
        pair = {r.label: r for r in closed if r.concurrency == concurrency}
        ratio = pair["webhook"].rate / pair["bare endpoint"].rate
        lines.append(f"- concurrency {concurrency}: {ratio:.2f}x")
    rated = [r for r in results if r.label == "webhook" and not isinstance(r.concurrency, int)]
    for result in rated:
        lines.append(
            f"Offered {args.rate:.0f}/s for {args.rate_seconds:.0f} s: webhook p99 "
            f"{result.percentile(0.99):.1f} ms, achieved {result.rate:.0f}/s"
        )
    lines.append("")
    lines.append("Database after the run: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 8, 32, 64],
    )
    parser.add_argument("--requests", type=int, default=3000, help="cap per level and endpoint")
    parser.add_argument("--seconds", type=float, default=10.0, help="cap per level and endpoint")
    parser.add_argument("--rate", type=float, default=200.0, help="offered deliveries/s")
    parser.add_argument("--rate-seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument(
        "--branches", type=int, default=BRANCHES, help="0: a branch per push, none superseded"
    )
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between phases")
    parser.add_argument(
        "--admin-dsn",
        default=os.environ.get(
            "CARTRIDGE_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("CARTRIDGE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    return parser.parse_args()


def publish_cost(redis_url: str, queue: str, count: int = 2000) -> float:
    """CPU milliseconds per Celery `send_task` to Redis, in this process: the relay's share of
    each delivery, whatever the database does."""
    from celery import Celery

    publisher = Celery("bench", broker=redis_url)
    publisher.send_task("bench.noop", args=[0], queue=queue, retry=False)
    started = time.process_time()
    for index in range(count):
        publisher.send_task("bench.noop", args=[index], queue=queue, retry=False)
    return (time.process_time() - started) / count * 1000


def run(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main() -> None:
    import redis

    args = parse_args()
    run_id = uuid.uuid4().hex[:10]
    queues = [f"bench-builds-{run_id}", f"bench-cartridge-{run_id}"]
    with tempfile.TemporaryDirectory() as state, bench_database(args.admin_dsn, run_id) as url:
        register_repository(url)
        env = {
            **os.environ,
            "CARTRIDGE_DATABASE_URL": url,
            "CARTRIDGE_BROKER_URL": args.redis_url,
            "CARTRIDGE_BUILD_QUEUE": queues[0],
            "CARTRIDGE_DEFAULT_QUEUE": queues[1],
            "CARTRIDGE_WEBHOOK_SECRET": SECRET,
            "CARTRIDGE_STATE_DIR": state,
        }
        print(f"# webhook intake, {args.workers} uvicorn worker(s), {os.cpu_count()} CPUs")
        spread = f"{args.branches} branches" if args.branches else "a branch each"
        print(f"# body {len(push_body(0, run_id))} bytes; pushes spread over {spread}")
        print(f"# before: {database_latency(args.admin_dsn, url)}", flush=True)
        publish_ms = publish_cost(args.redis_url, queues[1])
        print(f"# Celery send_task: {publish_ms:.2f} ms of CPU per message", flush=True)
        try:
            with server(env, args.workers) as (port, group):
                meter = CpuMeter(group, args.admin_dsn, url.rsplit("/", 1)[1])
                print(TABLE_HEAD, flush=True)
                results = run(measure(args, port, run_id, meter))
                time.sleep(3)  # let the relay publish the last jobs
            counts = database_counts(url)
            print(f"# after: {database_latency(args.admin_dsn, url)}")
        finally:
            connection = redis.Redis.from_url(args.redis_url)
            for queue in queues:
                connection.delete(queue, f"_kombu.binding.{queue}")
    print()
    print(report(args, results, counts))
    mean_latency = statistics.mean(results[-1].latencies) * 1000
    print(f"(mean latency at the offered rate: {mean_latency:.1f} ms)")


if __name__ == "__main__":
    main()
