"""Reconciler passes over 1,000 repositories: requests to GitHub, rate budget spent, duration.

Registers the repositories in a throwaway PostgreSQL database, gives each a few branches on the
fake GitHub of the tests (which checks every request and answer against GitHub's REST
description and answers `If-None-Match` with 304), and times three passes: the first one
(heads adopted, each default branch built), one after 1 % of the repositories got a push no
webhook told of, and one where nothing moved. Results go to the "Reconciler" section of
docs/benchmarks.md.

    python3 bench/reconcile.py [--repos 1000] [--branches 5] [--moved 10] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN_DSN = os.environ.get(
    "CARTRIDGE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Reconciler"


def sha(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:40]


def write_section(body: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    section = f"{SECTION}\n\n{body.strip()}\n\n"
    text = (
        pattern.sub(lambda _: section, text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + section)
    )
    DOC.write_text(text.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--branches", type=int, default=5, help="branches per repository")
    parser.add_argument("--moved", type=int, default=10, help="repositories pushed to unseen")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to each fake GitHub answer"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    args = parser.parse_args()

    database = f"cartridge_bench_{uuid.uuid4().hex[:8]}"
    dsn = f"{ADMIN_DSN.rsplit('/', 1)[0]}/{database}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')  # type: ignore[arg-type]
    state = tempfile.mkdtemp(prefix="cartridge-bench-")
    os.environ.update(
        {
            "CARTRIDGE_DATABASE_URL": dsn.replace("postgresql://", "postgresql+psycopg://", 1),
            "CARTRIDGE_STATE_DIR": state,
            "CARTRIDGE_GITHUB_TOKEN": "ghp_fake_token",
            "CARTRIDGE_RECONCILE_RATE_LIMIT_RESERVE": "0",
        }
    )
    try:
        rows = run(args)
    finally:
        from app.db import reset_caches
        from app.outbox.relay import reset_relay

        reset_relay()
        reset_caches()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # type: ignore[arg-type]
    load = os.getloadavg()[0]
    table = "\n".join(
        f"| {name} | {r['repositories']} | {r['requests']} | {r['not_modified']} | "
        f"{r['spent']} | {r['recovered']} | {r['queries']} | {r['seconds']:.1f} |"
        for name, r in rows
    )
    body = f"""
Command: `python3 bench/reconcile.py --repos {args.repos} --branches {args.branches} \
--moved {args.moved} --latency-ms {args.latency_ms:g}`

{args.repos:,} repositories with {args.branches} branches each, listed by the fake GitHub of the
tests (every request and answer checked against GitHub's REST description; 304 for an unchanged
page, as GitHub answers `If-None-Match`) with {args.latency_ms:g} ms added to each answer. One
reconciler pass at a time, requests sent one after another as GitHub asks of integrations.
"spent" is what GitHub counts against the hourly budget (5,000 for a token; a 304 costs
nothing); "queries" are SQL statements sent to PostgreSQL. Machine: {os.cpu_count()} CPUs,
Python {platform.python_version()}, PostgreSQL on the same host; load average {load:.1f} after
the run (other work shared the machine).

| pass | repositories | requests | 304 | spent | recovered pushes | queries | seconds |
| --- | --- | --- | --- | --- | --- | --- | --- |
{table}

A pass costs one request per page of 100 branches per repository, and spends rate budget only
on the listings that changed: at the default interval (300 s, 12 passes an hour) 1,000 quiet
repositories cost nothing an hour, and each repository with an unseen push costs one request.
The first pass builds each default branch's head once and only adopts the other heads.
"""
    print(body)
    if not args.no_write:
        write_section(body)


def run(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    from app import migrate
    from app.config import get_settings
    from app.db import get_session_factory, reset_caches
    from app.engine import get_engine
    from app.github.client import client_from_settings
    from app.models import Repository
    from app.reconcile.runs import run_pass
    from tests.support.fake_github import FakeGitHub

    reset_caches()
    settings = get_settings()
    migrate.upgrade(settings.resolved_database_url())
    names = [f"bench/repo-{n:04d}" for n in range(args.repos)]
    with get_session_factory()() as session:
        session.execute(
            insert(Repository),
            [
                {
                    "full_name": name,
                    "clone_url": f"https://github.com/{name}.git",
                    "image_name": name.replace("/", "-"),
                    "default_branch": "main",
                    "branch_filters": [],
                    "build_tags": False,
                    "cancel_superseded": True,
                }
                for name in names
            ],
        )
        session.commit()
    queries = 0

    def count(*_args: object) -> None:
        nonlocal queries
        queries += 1

    event.listen(get_engine(), "before_cursor_execute", count)
    rows: list[tuple[str, dict[str, Any]]] = []
    with FakeGitHub() as fake:
        fake.rate_limit = 1_000_000
        fake.latency_seconds = 0.0
        for name in names:
            fake.set_branches(
                name,
                {
                    "main": sha(name, "main"),
                    **{f"b{n}": sha(name, n) for n in range(args.branches - 1)},
                },
            )
        delay = args.latency_ms / 1000
        original = fake.handle

        def slow(*handle_args: Any) -> Any:
            if delay:
                time.sleep(delay)
            return original(*handle_args)

        fake.handle = slow  # type: ignore[method-assign]
        settings = settings.model_copy(update={"github_api_url": fake.url})
        client = client_from_settings(settings)
        for label, before in (
            ("first (adopts heads)", None),
            (f"{args.moved} repositories pushed to", "move"),
            ("nothing moved", None),
        ):
            if before == "move":
                for name in names[:: max(1, args.repos // max(1, args.moved))][: args.moved]:
                    fake.push(name, "main", sha(name, "moved"))
            spent, queries = fake.rate_used, 0
            started = time.perf_counter()
            result = run_pass(get_session_factory(), client, settings)
            rows.append(
                (
                    label,
                    {
                        "repositories": result.repositories,
                        "requests": result.requests,
                        "not_modified": result.not_modified,
                        "spent": fake.rate_used - spent,
                        "recovered": result.recovered_pushes,
                        "queries": queries,
                        "seconds": time.perf_counter() - started,
                    },
                )
            )
            print(label, rows[-1][1], flush=True)
        assert fake.contract_violations == [], fake.contract_violations
        client.close()
    return rows


if __name__ == "__main__":
    main()
