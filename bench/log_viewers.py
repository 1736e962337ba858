"""Live log viewers on one API process: LISTEN/NOTIFY with shared reads against per-viewer polling.

Ten running builds print a line every 50 ms; like a build host, a writer process buffers them and
commits the buffer every 0.5 s (`CARTRIDGE_BUILD_LOG_FLUSH_SECONDS`). N viewers (spread evenly
over the builds) follow `GET /api/v1/builds/{id}/log/stream` on one uvicorn process, while a
client reads `GET /api/v1/builds` five times a second. Measured per run:

- lag: from the moment the writer's commit returned to the moment a viewer received the line
  (p50 / p99 over every line every viewer received);
- database statements per second executed by the API process (counted on its engine), and how
  many of them served the builds list;
- p99 of `GET /api/v1/builds` under that load.

Two modes in the same run: `notify` (the hub: one LISTEN connection, streams woken by
notifications, viewers of a build at the same point sharing one read) and `polling` (each viewer
reads every 0.5 s on its own, as the stream did before the hub).

    python3 bench/log_viewers.py [--viewers 20,100,200] [--seconds 10] [--write-doc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN_DSN = os.environ.get(
    "CARTRIDGE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Live log viewers"
BUILDS = 10
LINE_SECONDS = 0.05
FLUSH_SECONDS = 0.5
LIST_PER_SECOND = 5
TICK = re.compile(r"^tick (\d+) (\d+)$")


# --- The API process (uvicorn --factory bench.log_viewers:counted_app) -------------------------


def counted_app() -> Any:
    """The real app, with a statement counter on its engine at `/_bench/statements`, and in
    `polling` mode the hub disabled: every stream polls and reads on its own."""
    from fastapi import FastAPI
    from sqlalchemy import event

    from app.engine import get_engine
    from app.events import hub
    from app.main import create_app

    if os.environ.get("BENCH_MODE") == "polling":
        hub._listen_dsn = lambda: None  # type: ignore[assignment]

        async def unshared(self: Any, key: Any, read: Any, subscription: Any) -> Any:
            return await read()

        hub.Hub.shared = unshared  # type: ignore[assignment,method-assign]
    counts = {"all": 0, "list": 0}
    serving_list: contextvars.ContextVar[bool] = contextvars.ContextVar("list", default=False)
    app: FastAPI = create_app()

    @event.listens_for(get_engine(), "before_cursor_execute")
    def count(*_args: Any) -> None:
        counts["all"] += 1
        if serving_list.get():
            counts["list"] += 1

    @app.middleware("http")
    async def mark_list(request: Any, call_next: Any) -> Any:
        # The endpoint's thread runs in a copy of this context: its statements are marked.
        serving_list.set(request.url.path == "/api/v1/builds")
        return await call_next(request)

    @app.get("/_bench/statements", include_in_schema=False)
    def statements() -> dict[str, int]:
        return dict(counts)

    return app


# --- Writers: one process, a thread per build ---------------------------------------------------


def write_logs(database_url: str, build_ids: list[int], seconds: float, out: str) -> None:
    import threading

    os.environ["CARTRIDGE_DATABASE_URL"] = database_url
    from app.builds import logs
    from app.db import get_session_factory

    flushed: dict[str, float] = {}
    lock = threading.Lock()

    def write(build_id: int) -> None:
        pending: list[str] = []
        numbers: list[int] = []
        number = 0
        deadline = time.monotonic() + seconds
        next_line = next_flush = time.monotonic()
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_line:
                number += 1
                pending.append(f"tick {build_id} {number}\n")
                numbers.append(number)
                next_line += LINE_SECONDS
            if now >= next_flush:
                next_flush += FLUSH_SECONDS
                if pending:
                    with get_session_factory()() as session:
                        logs.append(session, build_id, 1, "".join(pending))
                        session.commit()
                    committed = time.time()
                    with lock:
                        for n in numbers:
                            flushed[f"{build_id}:{n}"] = committed
                    pending, numbers = [], []
            time.sleep(max(0.0, min(next_line, next_flush) - time.monotonic()))

    threads = [threading.Thread(target=write, args=(build_id,)) for build_id in build_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    Path(out).write_text(json.dumps(flushed))


# --- Viewers and the list client (asyncio, in this process) ------------------------------------


async def view(client: httpx.AsyncClient, url: str, received: dict[str, float]) -> None:
    try:
        async with client.stream("GET", url) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                now = time.time()
                data = json.loads(line[6:])
                for text in data.get("content", "").splitlines():
                    match = TICK.match(text)
                    if match:
                        received.setdefault(f"{match[1]}:{match[2]}", now)
    except (httpx.HTTPError, asyncio.CancelledError):
        return


async def list_builds(client: httpx.AsyncClient, url: str, stop: asyncio.Event) -> list[float]:
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        answer = await client.get(f"{url}/api/v1/builds?limit=50")
        answer.raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(1 / LIST_PER_SECOND)
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(
    url: str, database_url: str, build_ids: list[int], viewers: int, seconds: float
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=viewers + 10, max_keepalive_connections=viewers + 10)
    received: list[dict[str, float]] = [{} for _ in range(viewers)]
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=30), limits=limits) as client:
        streams = [
            asyncio.create_task(
                view(
                    client,
                    f"{url}/api/v1/builds/{build_ids[i % len(build_ids)]}/log/stream",
                    received[i],
                )
            )
            for i in range(viewers)
        ]
        await asyncio.sleep(2)  # every viewer connected and caught up
        before = (await client.get(f"{url}/_bench/statements")).json()
        stop = asyncio.Event()
        lister = asyncio.create_task(list_builds(client, url, stop))
        handle, out = tempfile.mkstemp(suffix=".json")
        os.close(handle)
        writer = multiprocessing.get_context("spawn").Process(
            target=write_logs, args=(database_url, build_ids, seconds, out)
        )
        started = time.monotonic()
        writer.start()
        await asyncio.to_thread(writer.join)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.5)  # the last flush reaches everyone
        after = (await client.get(f"{url}/_bench/statements")).json()
        stop.set()
        list_latencies = await lister
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    flushed: dict[str, float] = json.loads(Path(out).read_text())
    os.unlink(out)
    lags = []
    missing = 0
    for i, seen in enumerate(received):
        build_id = build_ids[i % len(build_ids)]
        for key, committed in flushed.items():
            if not key.startswith(f"{build_id}:"):
                continue
            if key in seen:
                lags.append(max(0.0, seen[key] - committed))
            else:
                missing += 1
    window = elapsed + 1.5
    return {
        "viewers": viewers,
        "lines": len(flushed),
        "deliveries": len(lags),
        "missing": missing,
        "lag_p50_ms": percentile(lags, 0.5) * 1000,
        "lag_p99_ms": percentile(lags, 0.99) * 1000,
        "statements_per_second": (after["all"] - before["all"]) / window,
        "list_statements_per_second": (after["list"] - before["list"]) / window,
        "list_p99_ms": percentile(list_latencies, 0.99),
        "list_requests": len(list_latencies),
    }


# --- Set-up --------------------------------------------------------------------------------------


def start_server(
    database_url: str, state_dir: str, mode: str
) -> tuple[subprocess.Popen[bytes], str]:
    from tests.support.server import free_port

    port = free_port()
    env = {
        **os.environ,
        "CARTRIDGE_DATABASE_URL": database_url,
        "CARTRIDGE_STATE_DIR": state_dir,
        "CARTRIDGE_BROKER_URL": "memory://",
        "BENCH_MODE": mode,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}",
    }
    command = [
        sys.executable, "-m", "uvicorn", "log_viewers:counted_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--timeout-graceful-shutdown", "1",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the API did not start")


def new_builds(database_url: str, count: int) -> list[int]:
    from app.engine import build_engine
    from app.models import Build, Repository

    engine = build_engine(database_url)
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        repository = session.query(Repository).one_or_none()
        if repository is None:
            repository = Repository(
                full_name="bench/app", clone_url="https://example.com/a.git", image_name="bench-app"
            )
            session.add(repository)
            session.flush()
        builds = [
            Build(repository_id=repository.id, sha=uuid.uuid4().hex + "0" * 8, status="running")
            for _ in range(count)
        ]
        session.add_all(builds)
        # A list with some history, as in production.
        session.add_all(
            Build(repository_id=repository.id, sha=uuid.uuid4().hex + "1" * 8, status="succeeded")
            for _ in range(200)
        )
        session.commit()
        ids = [build.id for build in builds]
    engine.dispose()
    return ids


def finish(database_url: str, build_ids: list[int]) -> None:
    from app.builds.lifecycle import transition
    from app.engine import build_engine
    from app.models import BuildStatus

    engine = build_engine(database_url)
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        for build_id in build_ids:
            transition(session, build_id, BuildStatus.SUCCEEDED)
        session.commit()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", default="20,100,200")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.viewers.split(",")]

    from app import migrate

    name = f"cartridge_bench_viewers_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    database_url = (
        ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        + f"/{name}"
    )
    results: dict[str, list[dict[str, Any]]] = {"notify": [], "polling": []}
    load_before = os.getloadavg()[0]
    try:
        migrate.upgrade(database_url)
        state_dir = tempfile.mkdtemp(prefix="cartridge-bench-")
        for viewers in counts:
            for mode in ("notify", "polling"):
                server, url = start_server(database_url, state_dir, mode)
                try:
                    build_ids = new_builds(database_url, BUILDS)
                    result = asyncio.run(
                        measure(url, database_url, build_ids, viewers, args.seconds)
                    )
                    finish(database_url, build_ids)
                finally:
                    server.terminate()
                    server.wait(10)
                results[mode].append(result)
                print(mode, json.dumps(result), flush=True)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    load_after = os.getloadavg()[0]
    text = report(results, args, load_before, load_after)
    print(text)
    if args.write_doc:
        write_doc(text)


def report(results: dict[str, list[dict[str, Any]]], args: Any, before: float, after: float) -> str:
    rows = []
    for mode, label in (
        ("notify", "LISTEN/NOTIFY, shared reads"),
        ("polling", "polling per viewer"),
    ):
        for r in results[mode]:
            rows.append(
                f"| {label} | {r['viewers']} | {r['lag_p50_ms']:.0f} | {r['lag_p99_ms']:.0f} | "
                f"{r['statements_per_second']:.0f} | {r['list_statements_per_second']:.0f} | "
                f"{r['list_p99_ms']:.1f} | {r['missing']} |"
            )
    notify = {r["viewers"]: r for r in results["notify"]}
    verdicts = []
    if notify:
        most = max(notify)
        verdicts.append(
            f"Lag p99 at {most} viewers: {notify[most]['lag_p99_ms']:.0f} ms "
            f"(target < 1000 ms: **{'met' if notify[most]['lag_p99_ms'] < 1000 else 'not met'}**)."
        )
        if min(notify) != most:
            least = min(notify)
            ratio = notify[most]["statements_per_second"] / max(
                1.0, notify[least]["statements_per_second"]
            )
            verdicts.append(
                f"Statements per second at {most} viewers / at {least}: {ratio:.2f}x "
                f"(target <= 1.2x: **{'met' if ratio <= 1.2 else 'not met'}**)."
            )
    command = f"python3 bench/log_viewers.py --viewers {args.viewers} --seconds {args.seconds:g}"
    header = (
        "| stream | viewers | lag p50 (ms) | lag p99 (ms) | statements/s | of which list "
        "| `GET /api/v1/builds` p99 (ms) | lines missed |"
    )
    return f"""{SECTION}

Command: `{command} --write-doc`

Load: {BUILDS} running builds, each printing a line every {LINE_SECONDS * 1000:.0f} ms; a writer
process commits each build's buffer every {FLUSH_SECONDS} s (a build host's flush). N viewers
spread evenly over the builds follow `/api/v1/builds/{{id}}/log/stream` on one uvicorn process;
one client reads `GET /api/v1/builds?limit=50` {LIST_PER_SECOND} times a second meanwhile. Lag:
from the writer's commit returning to a viewer receiving the line. Statements: every statement
the API process ran during the {args.seconds:g} s of writing (and the 1.5 s after), of which
"list" served the builds list. Machine: {os.cpu_count()} CPUs (writers, viewers, API and
PostgreSQL share them), Python {platform.python_version()}; load average {before:.1f} before and
{after:.1f} after the run.

{header}
| --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

{" ".join(verdicts)}

With notifications, a flush wakes only the streams of that build, and the viewers of the build
at the same point share one read: the API's database work follows the number of flushes (10
builds x 2 per second), not the number of viewers. Polling costs one read per viewer every
half second whether anything changed or not, and its lag is bounded below by the poll interval.
"""


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    start = doc.find(SECTION)
    if start == -1:
        doc = doc.rstrip() + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text + (doc[end + 1 :] if end != -1 else "")
    DOC.write_text(doc)


if __name__ == "__main__":
    main()
