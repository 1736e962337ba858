"""Log reads: 20 concurrent readers of a capped (16 MiB) build log, API memory and latency.

Fills a throwaway PostgreSQL database with one build whose log is as large as the default cap
allows (16 MiB in 16 KiB chunks, as the worker commits them), starts the API in a process of its
own, and lets 20 readers page through the log with `GET /api/v1/builds/{id}/log` (1,000,000
characters a page, the largest page, from random offsets), then download it whole with
`GET /api/v1/builds/{id}/log.txt`. The server's resident memory is sampled every 10 ms.

`--before REF` runs the same load against the API of a git revision first (checked out in a
temporary worktree, same database), for the before/after comparison. Results go to the "Log
reads" section of docs/benchmarks.md.

    python3 bench/log_reads.py [--before main] [--readers 20] [--pages 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import migrate  # noqa: E402
from tests.support.server import free_port  # noqa: E402

ADMIN_DSN = os.environ.get(
    "CARTRIDGE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Log reads"
LOG_BYTES = 16 * 1024 * 1024
CHUNK = 16 * 1024
# The largest page the API serves, and a screenful or two.
PAGES = (1_000_000, 65_536)
Sample = tuple[float, bool]
BASELINE = "`/healthz` (baseline: no database, no log)"


def fill(dsn: str) -> tuple[int, int]:
    """One repository, one finished build, a 16 MiB log of numbered lines. Returns the build id
    and the log's length in characters."""
    line = "compile: step {:08d} " + "x" * 60 + "\n"
    text = "".join(line.format(n) for n in range(LOG_BYTES // len(line.format(0))))
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "INSERT INTO repositories (full_name, clone_url, default_branch, image_name,"
            " branch_filters, build_tags, cancel_superseded, created_at, updated_at)"
            " VALUES ('bench/logs', 'https://github.com/bench/logs.git', 'main', 'bench-logs',"
            " '[]', false, true, now(), now())"
        )
        build_id = connection.execute(
            "INSERT INTO builds (repository_id, sha, status, attempt, lease_retries, queued_at,"
            " finished_at, created_at) SELECT id, repeat('a', 40), 'failed', 1, 0, now(), now(),"
            " now() FROM repositories RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        with connection.cursor().copy(
            'COPY build_log_chunks (build_id, attempt, "offset", content, created_at) FROM STDIN'
        ) as copy:
            for offset in range(0, len(text), CHUNK):
                copy.write_row((build_id, 1, offset, text[offset : offset + CHUNK], "now"))
    return int(build_id), len(text)


class RssSampler:
    """The peak resident memory of a process, sampled from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Run:
    label: str  # "before" or "after"
    what: str  # the requests, e.g. "1,000,000-character pages"
    baseline_rss: int
    peak_rss: int
    latencies: list[float]
    errors: int

    @property
    def growth_mb(self) -> float:
        return (self.peak_rss - self.baseline_rss) / 1e6


def start_server(source: Path, url: str, state_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(source),
        "CARTRIDGE_DATABASE_URL": url,
        "CARTRIDGE_STATE_DIR": state_dir,
    }
    command = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=source, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the API server did not start")


def read_pages(job: tuple[str, int, int, list[int]]) -> list[Sample]:
    """One reader: its pages, one after the other, on one keep-alive connection."""
    base, build_id, page, offsets = job
    samples = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for offset in offsets:
            started = time.perf_counter()
            response = client.get(
                f"/api/v1/builds/{build_id}/log", params={"offset": offset, "limit": page}
            )
            samples.append((time.perf_counter() - started, response.status_code == 200))
    return samples


def read_healthz(job: tuple[str, int]) -> list[Sample]:
    base, count = job
    samples = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get("/healthz")
            samples.append((time.perf_counter() - started, response.status_code == 200))
    return samples


def read_whole(job: tuple[str, int, int]) -> Sample:
    base, build_id, length = job
    with httpx.Client(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        response = client.get(f"/api/v1/builds/{build_id}/log.txt")
        ok = response.status_code == 200 and len(response.text) == length
        return time.perf_counter() - started, ok


def follow_stream(job: tuple[str, int, int]) -> Sample:
    """The live stream of a finished log, from its start to the `end` event."""
    base, build_id, length = job
    received, ended = 0, False
    started = time.perf_counter()
    with httpx.stream("GET", f"{base}/api/v1/builds/{build_id}/log/stream", timeout=300) as answer:
        event = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
                ended = ended or event == "end"
            elif line.startswith("data: ") and event == "log":
                received += len(json.loads(line[len("data: ") :])["content"])
    return time.perf_counter() - started, ended and received == length


def measured(label: str, what: str, server_pid: int, work: Callable[[], list[Sample]]) -> Run:
    sampler = RssSampler(server_pid)
    baseline = sampler.rss()
    with sampler:
        samples = work()
    return Run(
        label=label,
        what=what,
        baseline_rss=baseline,
        peak_rss=sampler.peak,
        latencies=[seconds for seconds, _ in samples],
        errors=sum(1 for _, ok in samples if not ok),
    )


def load(
    label: str, source: Path, url: str, build_id: int, length: int, readers: int, pages: int
) -> list[Run]:
    runs = []
    with tempfile.TemporaryDirectory() as state_dir:
        server, base = start_server(source, url, state_dir)
        try:
            with httpx.Client(base_url=base, timeout=120) as warm:
                warm.get(f"/api/v1/builds/{build_id}/log", params={"offset": length - 10})
            # Readers are processes: in threads of one process they would wait for each other's
            # HTTP parsing (the GIL) and measure the client, not the server.
            with multiprocessing.Pool(readers) as pool:
                if label == "after":

                    def baseline() -> list[Sample]:
                        jobs = [(base, pages)] * readers
                        return [one for samples in pool.map(read_healthz, jobs) for one in samples]

                    runs.append(measured(label, BASELINE, server.pid, baseline))
                for page in PAGES:
                    rng = random.Random(page)
                    jobs = [
                        (base, build_id, page, [rng.randrange(length) for _ in range(pages)])
                        for _ in range(readers)
                    ]

                    def paged(jobs: list[Any] = jobs) -> list[Sample]:
                        return [one for samples in pool.map(read_pages, jobs) for one in samples]

                    runs.append(measured(label, f"{page:,}-character pages", server.pid, paged))
                if label == "after":
                    for page in PAGES:
                        rng = random.Random(page + 1)
                        alone = (base, build_id, page, [rng.randrange(length) for _ in range(50)])

                        def one(job: Any = alone) -> list[Sample]:
                            return read_pages(job)

                        what = f"{page:,}-character pages, one reader alone"
                        runs.append(measured(label, what, server.pid, one))
                if label == "after":

                    def whole() -> list[Sample]:
                        return pool.map(read_whole, [(base, build_id, length)] * readers)

                    runs.append(measured(label, "`log.txt`, the whole log", server.pid, whole))

                    def stream() -> list[Sample]:
                        return pool.map(follow_stream, [(base, build_id, length)] * readers)

                    runs.append(measured(label, "`log/stream` from the start", server.pid, stream))
        finally:
            server.terminate()
            server.wait(timeout=20)
    for run in runs:
        print(f"{run.label}: {run.what}: {run.growth_mb:.0f} MB", flush=True)
    return runs


def checkout(revision: str, into: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), revision],
        check=True,
        capture_output=True,
    )


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cut[49] * 1000, "p99": cut[98] * 1000, "max": ordered[-1] * 1000}


def write_section(body: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    section = f"{SECTION}\n\n{body.strip()}\n\n"
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.write_text(text.rstrip() + "\n")


def report(
    args: argparse.Namespace, runs: list[Run], length: int, load_average: tuple[float, float]
) -> str:
    rows = []
    for run in runs:
        cut = percentiles(run.latencies)
        rows.append(
            f"| {run.label} | {run.what} | {run.baseline_rss / 1e6:.0f} | {run.peak_rss / 1e6:.0f}"
            f" | {run.growth_mb:.0f} | {cut['p50']:.0f} | {cut['p99']:.0f} | {cut['max']:.0f}"
            f" | {run.errors} |"
        )
    after = [run for run in runs if run.label == "after" and run.what != BASELINE]
    growth = (max(run.peak_rss for run in after) - after[0].baseline_rss) / 1e6
    p99 = "; ".join(
        f"{run.what}: **{'met' if value < 200 else 'NOT met'}** ({value:.0f} ms)"
        for run in after
        if run.what.endswith("pages") and (value := percentiles(run.latencies)["p99"]) >= 0
    )
    command = "python3 bench/log_reads.py" + (f" --before {args.before}" if args.before else "")
    header = "| code | requests | RSS before (MB) | peak RSS (MB) | growth (MB) | p50 (ms) |"
    return f"""
Command: `{command} --readers {args.readers} --pages {args.pages}`

Data: one finished build whose log is {length / 2**20:.1f} MiB (the default cap,
`CARTRIDGE_BUILD_LOG_MAX_BYTES`), stored in 16 KiB chunks as the worker commits them.
Load: {args.readers} concurrent readers, each a process of its own on one keep-alive
connection to one uvicorn process, each reading {args.pages} pages from random offsets
(`GET /api/v1/builds/{{id}}/log?offset=..&limit=..`), first with the largest page the API
serves, then with 64 KiB pages; then, after the change, {args.readers} concurrent downloads of
the whole log (`GET /api/v1/builds/{{id}}/log.txt`). The server's RSS is sampled from /proc every
10 ms. "before" is the API at `{args.before or "-"}` on the same database. Machine:
{os.cpu_count()} CPUs, Python {platform.python_version()}, PostgreSQL and the readers on the
same host; load average {load_average[0]:.1f} before and {load_average[1]:.1f} after the run.

{header} p99 (ms) | max (ms) | errors |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Targets (after): peak RSS growth < 100 MB: **{"met" if growth < 100 else "NOT met"}**
({growth:.0f} MB over the whole run); page p99 < 200 ms: {p99}.

For `log.txt` and `log/stream` the latency is the time to receive the whole
{length / 2**20:.0f} MiB log, each of the {args.readers} readers at once. Before, a read
selected every chunk past its offset and joined them in Python, so each request held up to the
whole log; after, a read asks PostgreSQL for the chunk the range starts in and the chunks that
start inside it (at most 64 KiB each), `log.txt` reads 32 chunks per query, and each stream
event reads one page. Each row's growth is measured from the start of that row's load on the
same server process (rows run one after the other). The `/healthz` row is the floor this machine
puts under any request with this many readers at once; the "one reader alone" rows are 50
sequential pages with nothing else running against the server, the cost of a read itself.
"before" has no stream row: its stream re-read the rest of the log for every 64,000-character
event, minutes for one reader of this log.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision to measure first, e.g. main")
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--pages", type=int, default=10, help="pages each reader reads")
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    args = parser.parse_args()

    database = f"cartridge_bench_{uuid.uuid4().hex[:8]}"
    dsn = f"{ADMIN_DSN.rsplit('/', 1)[0]}/{database}"
    url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')  # type: ignore[arg-type]
    runs: list[Run] = []
    load_before = os.getloadavg()[0]
    before_tree = Path(tempfile.mkdtemp(prefix="cartridge-before-")) / "tree"
    try:
        migrate.upgrade(url)
        build_id, length = fill(dsn)
        print(f"log of build {build_id}: {length:,} characters", flush=True)
        if args.before:
            checkout(args.before, before_tree)
            runs += load("before", before_tree, url, build_id, length, args.readers, args.pages)
        runs += load("after", ROOT, url, build_id, length, args.readers, args.pages)
    finally:
        if before_tree.exists():
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before_tree)],
                check=False,
            )
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # type: ignore[arg-type]
    body = report(args, runs, length, (load_before, os.getloadavg()[0]))
    print(body)
    if not args.no_write:
        write_section(body)


if __name__ == "__main__":
    main()
