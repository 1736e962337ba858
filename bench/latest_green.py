"""Latest-green latency with a million builds in PostgreSQL.

Fills a throwaway database with 1,000,000 builds, their pushes across many branches (force pushes
back to older commits, deleted branches), and images for the succeeded ones, then measures
`GET /api/v1/repos/{owner}/{name}/branches/{branch}/latest-green` through a real uvicorn server
(baseline: `/healthz` on the same server) and the bare query. Results go to the "Latest green"
section of docs/benchmarks.md.

    python3 bench/latest_green.py [--builds 1000000] [--requests 5000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import migrate  # noqa: E402
from app.builds import queries  # noqa: E402
from app.engine import build_engine  # noqa: E402
from tests.support.server import free_port  # noqa: E402

ADMIN_DSN = os.environ.get(
    "CARTRIDGE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Latest green"
RELEASES = 3  # release/0 .. release/2 per repository
FEATURES = 40  # feature/<n> per repository


def fill(dsn: str, builds: int, repos: int) -> dict[str, int]:
    """Builds are spread round-robin over repositories; each goes to main (60 %), a release
    branch (20 %) or a feature branch (20 %). Push ids interleave with build ids (2g, 2g+1),
    so the extra pushes (force pushes back, deletions) sit in the history where they happen."""
    # Only integers are interpolated into the SQL below.
    statements = [
        f"""
        INSERT INTO repositories (id, full_name, clone_url, default_branch, image_name,
            branch_filters, build_tags, cancel_superseded, created_at, updated_at)
        SELECT r, 'bench/repo-' || r, 'https://github.com/bench/repo-' || r || '.git', 'main',
            'bench-repo-' || r, '[]', false, true, now(), now()
        FROM generate_series(1, {repos:d}) AS r
        """,  # noqa: S608
        f"""
        INSERT INTO builds (id, repository_id, sha, status, attempt, lease_retries,
            queued_at, started_at, finished_at, build_host, created_at)
        SELECT g, 1 + g % {repos:d}, md5(g::text) || substr(md5('x' || g), 1, 8),
            CASE WHEN g > {builds:d} - 200 THEN
                     (CASE WHEN g % 2 = 0 THEN 'queued' ELSE 'running' END)
                 WHEN abs(hashtext(g::text)) % 100 < 80 THEN 'succeeded'
                 WHEN abs(hashtext(g::text)) % 100 < 92 THEN 'failed'
                 WHEN abs(hashtext(g::text)) % 100 < 96 THEN 'errored'
                 ELSE 'cancelled' END,
            1, 0,
            now() - ({builds:d} - g) * interval '20 seconds',
            now() - ({builds:d} - g) * interval '20 seconds' + interval '5 seconds',
            CASE WHEN g > {builds:d} - 200 THEN NULL
                 ELSE now() - ({builds:d} - g) * interval '20 seconds' + interval '3 minutes'
            END,
            'host-' || g % 8, now()
        FROM generate_series(1, {builds:d}) AS g
        """,  # noqa: S608
        # The branch each build was pushed to.
        f"""
        CREATE TEMP TABLE bench_branch AS
        SELECT g AS build_id, 1 + g % {repos:d} AS repository_id,
            CASE WHEN pick < 60 THEN 'main'
                 WHEN pick < 80 THEN 'release/' || pick % {RELEASES:d}
                 ELSE 'feature/' || abs(hashtext(g || 'f')) % {FEATURES:d} END AS branch
        FROM generate_series(1, {builds:d}) AS g,
            LATERAL (SELECT abs(hashtext(g || 'b')) % 100 AS pick) AS branch_pick
        """,  # noqa: S608
        """
        INSERT INTO pushes (id, position, repository_id, ref, branch, before_sha, after_sha,
            forced, created, deleted, pusher, build_id, decision, received_at)
        SELECT 2 * b.build_id, 2 * b.build_id, b.repository_id, 'refs/heads/' || b.branch, b.branch,
            repeat('0', 40), builds.sha, false, false, false, 'octocat', b.build_id, 'built',
            builds.queued_at
        FROM bench_branch b JOIN builds ON builds.id = b.build_id
        """,
        # 1 % of pushes are followed by a force push back to the repository's build 50 earlier.
        f"""
        INSERT INTO pushes (id, position, repository_id, ref, branch, before_sha, after_sha,
            forced, created, deleted, pusher, build_id, decision, received_at)
        SELECT 2 * b.build_id + 1, 2 * b.build_id + 1, b.repository_id,
            'refs/heads/' || b.branch, b.branch,
            builds.sha, older.sha, true, false, false, 'octocat', older.id, 'built',
            builds.queued_at
        FROM bench_branch b
        JOIN builds ON builds.id = b.build_id
        JOIN builds older ON older.id = b.build_id - 50 * {repos:d}
        WHERE b.build_id % 100 = 7
        """,  # noqa: S608
        # 3 % of feature pushes are followed by the branch's deletion (later pushes revive it).
        """
        INSERT INTO pushes (id, position, repository_id, ref, branch, before_sha, after_sha,
            forced, created, deleted, pusher, build_id, decision, received_at)
        SELECT 2 * b.build_id + 1, 2 * b.build_id + 1, b.repository_id,
            'refs/heads/' || b.branch, b.branch,
            builds.sha, repeat('0', 40), false, false, true, 'octocat', NULL, 'deleted',
            builds.queued_at
        FROM bench_branch b JOIN builds ON builds.id = b.build_id
        WHERE b.branch LIKE 'feature/%' AND b.build_id % 100 <> 7
            AND abs(hashtext(b.build_id || 'd')) % 100 < 3
        """,
        """
        INSERT INTO images (build_id, attempt, name, tag, manifest_digest, config_digest,
            media_type, size, layers, roles, labels, created_at)
        SELECT id, 1, 'bench-repo-' || repository_id, sha,
            'sha256:' || md5(sha) || md5(sha || 'm'), 'sha256:' || md5(sha || 'c') || md5(sha),
            'application/vnd.oci.image.manifest.v1+json', 123456789, '[]',
            '{"web": "bin/web", "worker": "bin/worker", ".shell": "/bin/sh -l"}',
            jsonb_build_object('org.opencontainers.image.revision', sha), now()
        FROM builds WHERE status = 'succeeded'
        """,
        "SELECT setval('repositories_id_seq', (SELECT max(id) FROM repositories))",
        "SELECT setval('builds_id_seq', (SELECT max(id) FROM builds))",
        "SELECT setval('pushes_id_seq', (SELECT max(id) FROM pushes))",
        "ANALYZE",
    ]
    counts: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)  # type: ignore[arg-type]
        for table in ("repositories", "builds", "pushes", "images"):
            count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            counts[table] = connection.execute(count).fetchone()[0]  # type: ignore[index]
    return counts


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50": cut[49] * 1000,
        "p90": cut[89] * 1000,
        "p99": cut[98] * 1000,
        "max": ordered[-1] * 1000,
    }


def timed(call: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def targets(repos: int, count: int, seed: int = 7) -> list[tuple[int, str]]:
    """What deploy tooling asks, mostly about main and release branches; some feature branches
    (often long unpushed in that repository) and branches that were never pushed at all."""
    rng = random.Random(seed)

    def branch() -> str:
        pick = rng.randrange(100)
        if pick < 60:
            return "main"
        if pick < 80:
            return f"release/{rng.randrange(RELEASES)}"
        if pick < 95:
            return f"feature/{rng.randrange(FEATURES)}"
        return f"never-pushed/{rng.randrange(1000)}"

    return [(rng.randint(1, repos), branch()) for _ in range(count)]


def start_server(url: str, state_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "CARTRIDGE_DATABASE_URL": url,
        "CARTRIDGE_STATE_DIR": state_dir,
        "CARTRIDGE_PROXY_HOST": "proxy.bench:5080",
    }
    command = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env)
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


def plan(url: str, full_name: str, branch: str) -> str:
    statement = queries.latest_green_by_name_statement(full_name, branch).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {statement}")  # type: ignore[arg-type]
        return "\n".join(row[0] for row in rows)


def write_section(body: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    section = f"{SECTION}\n\n{body.strip()}\n\n"
    text = (
        pattern.sub(lambda _: section, text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + section)
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=1_000_000)
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    args = parser.parse_args()

    database = f"cartridge_bench_{uuid.uuid4().hex[:8]}"
    base_dsn = ADMIN_DSN.rsplit("/", 1)[0]
    dsn = f"{base_dsn}/{database}"
    url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')  # type: ignore[arg-type]
    server = None
    load_before = os.getloadavg()[0]
    try:
        migrate.upgrade(url)
        started = time.perf_counter()
        counts = fill(dsn, args.builds, args.repos)
        fill_seconds = time.perf_counter() - started
        print(f"filled in {fill_seconds:.0f} s: {counts}", flush=True)

        sample = targets(args.repos, args.requests)
        engine = build_engine(url)
        names = [(f"bench/repo-{repository_id}", branch) for repository_id, branch in sample]
        with Session(engine) as session:
            for full_name, branch in names[:200]:  # warm the caches
                queries.latest_green_by_name(session, full_name, branch)
            it = iter(names)
            query_samples = timed(
                lambda: queries.latest_green_by_name(session, *next(it)), len(names)
            )
        engine.dispose()

        with tempfile.TemporaryDirectory() as state_dir:
            server, base = start_server(url, state_dir)
            paths = [
                f"/api/v1/repos/bench/repo-{repository_id}/branches/{branch}/latest-green"
                for repository_id, branch in sample
            ]
            with httpx.Client(base_url=base, timeout=10) as client:
                outcomes: dict[int, int] = {}
                for path in paths[:200]:
                    client.get(path)
                healthz = timed(lambda: client.get("/healthz"), len(paths))
                readyz = timed(lambda: client.get("/readyz"), len(paths))
                it_paths = iter(paths)

                def request() -> None:
                    status = client.get(next(it_paths)).status_code
                    outcomes[status] = outcomes.get(status, 0) + 1

                endpoint = timed(request, len(paths))
        plans = {
            branch: plan(url, "bench/repo-1", branch)
            for branch in ("main", "feature/7", "never-pushed/1")
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if args.keep:
            print(f"kept database {database}", flush=True)
        else:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # type: ignore[arg-type]

    load_after = os.getloadavg()[0]
    rows = [
        ("`GET .../latest-green` through uvicorn", percentiles(endpoint)),
        ("`GET /healthz` (baseline: no database)", percentiles(healthz)),
        ("`GET /readyz` (baseline: one `SELECT 1`)", percentiles(readyz)),
        ("bare query (`latest_green_by_name`, one session)", percentiles(query_samples)),
    ]
    table = "\n".join(
        f"| {label} | {m['p50']:.2f} | {m['p90']:.2f} | {m['p99']:.2f} | {m['max']:.2f} |"
        for label, m in rows
    )
    explained = "\n\n".join(f"`{branch}`:\n\n```\n{text}\n```" for branch, text in plans.items())
    answers = ", ".join(f"{count} x {status}" for status, count in sorted(outcomes.items()))
    verdict = "met" if rows[0][1]["p99"] < 10 else "NOT met"
    body = f"""
Command: `python3 bench/latest_green.py --builds {args.builds} --repos {args.repos} \
--requests {args.requests}`

Data: {counts["builds"]:,} builds over {counts["repositories"]} repositories,
{counts["pushes"]:,} pushes and {counts["images"]:,} images, filled in {fill_seconds:.0f} s
with `INSERT .. SELECT generate_series`. Builds go to main (60 %), three release branches
(20 %) and forty feature branches (20 %); 1 % of pushes are force pushes back to an older
commit; feature branches are deleted now and then.

Load: {len(paths)} sequential requests on one keep-alive connection to one uvicorn worker
(a separate process), for random (repository, branch) pairs: 60 % main, 20 % release, 15 %
feature, 5 % never-pushed branches (answers: {answers}). The bare query runs the same pairs
in one session in the benchmark process. Machine: {os.cpu_count()} CPUs, Python
{platform.python_version()}, PostgreSQL on the same host; load average {load_before:.1f}
before and {load_after:.1f} after the run.

| latency (ms) | p50 | p90 | p99 | max |
| --- | --- | --- | --- | --- |
{table}

Target p99 < 10 ms through the server: **{verdict}**.

The baselines tell the query's own cost apart from what every request to the server pays:
HTTP parsing, thread-pool hops for the endpoint and its dependencies, and the session's round
trips to PostgreSQL (pool pre-ping, BEGIN, the query, COMMIT). These fixed costs grow with CPU
contention: on the same machine shared with other test and benchmark runs (load average 4 to
7), the same command measured p50 12 ms and p99 74 ms through the server, `/healthz` p99 12 ms.

The query walks the `(repository_id, branch, id)` index backwards and stops at the first push
that is green or a deletion, so its cost depends on how many pushes since the last green one,
not on the branch's length. Plans for `bench/repo-1` (EXPLAIN ANALYZE):

{explained}
"""  # noqa: S608 (Markdown that mentions SQL, not a query)
    print(body)
    if not args.no_write:
        write_section(body)


if __name__ == "__main__":
    main()
