"""The API-backed CLI commands against a real server."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

from click.testing import CliRunner

from app.builds import logs
from app.builds.lifecycle import transition
from app.cli.errors import EXIT_UNREACHABLE
from app.cli.main import cli
from app.db import session_scope
from app.models import BuildStatus
from tests.support.factories import MakeBuild, MakeImage, MakePush, MakeRepository
from tests.support.server import free_port

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_repo_add_and_list(run) -> None:  # type: ignore[no-untyped-def]
    added = run(
        "repo", "add", "octo/app", "--webhook-secret", "s3cret-value", "--branch-filter", "main"
    )
    assert added.exit_code == 0, added.output
    assert "registered octo/app (image octo-app)" in added.stdout
    assert run("repo", "add", "octo/lib", "--image-name", "team/lib").exit_code == 0

    listed = run("repo", "list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "DEFAULT", "IMAGE", "SECRET", "BRANCHES", "CREATED"]
    assert lines[1].split()[:5] == ["octo/app", "main", "octo-app", "yes", "main"]
    assert lines[2].split()[:5] == ["octo/lib", "main", "team/lib", "global", "*"]
    as_json = json.loads(run("repo", "list", "--json").stdout)
    assert [item["full_name"] for item in as_json] == ["octo/app", "octo/lib"]
    assert "s3cret-value" not in listed.stdout + run("repo", "list", "--json").stdout


def test_repo_limits_shows_and_changes_a_repositorys_own_limits(run) -> None:  # type: ignore[no-untyped-def]
    assert run("repo", "add", "octo/app").exit_code == 0
    changed = run("repo", "limits", "octo/app", "--memory", "4g", "--cpus", "1.5", "--pids", "64")
    assert changed.exit_code == 0, changed.output
    assert changed.stdout.splitlines() == [
        "memory:  4 GiB",
        "swap:    the installation's (CARTRIDGE_BUILD_SWAP)",
        "cpus:    1.5",
        "pids:    64",
        "disk:    the installation's (CARTRIDGE_BUILD_DISK)",
    ]
    reset = run("repo", "limits", "octo/app", "--reset", "pids", "--disk", "20g", "--json")
    assert json.loads(reset.stdout) == {
        "memory": 4 << 30,
        "swap": None,
        "cpus": 1.5,
        "pids": None,
        "disk": 20 << 30,
    }
    refused = run("repo", "limits", "octo/app", "--memory", "lots")
    assert refused.exit_code != 0
    assert "validation_error" in refused.output
    assert json.loads(run("repo", "limits", "octo/app", "--json").stdout)["memory"] == 4 << 30


def test_api_errors_are_printed_and_exit_non_zero(run) -> None:  # type: ignore[no-untyped-def]
    assert run("repo", "add", "octo/app").exit_code == 0
    duplicate = run("repo", "add", "octo/app")
    assert duplicate.exit_code == 1
    assert "Repository octo/app is already registered. (repository_exists, HTTP 409)" in (
        duplicate.stderr
    )
    no_token = run("repo", "add", "octo/other", token=None)
    assert no_token.exit_code == 1
    assert "(unauthorized, HTTP 401)" in no_token.stderr
    invalid = run("repo", "add", "not-a-name")
    assert invalid.exit_code == 1
    assert "validation_error" in invalid.stderr
    assert "full_name" in invalid.stderr
    bad_sha = run("builds", "list", "--sha", "xyz")
    assert bad_sha.exit_code == 1
    assert "sha" in bad_sha.stderr


def test_unreachable_api_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["builds", "list", "--api-url", url])
    assert result.exit_code == EXIT_UNREACHABLE
    assert result.stderr.startswith(f"error: cannot reach the Cartridge API at {url}")


def test_builds_list_show_and_filters(
    run,
    make_repository: MakeRepository,
    make_build: MakeBuild,
    make_push: MakePush,
    make_image: MakeImage,
) -> None:  # type: ignore[no-untyped-def]
    repo = make_repository()
    green = make_build(repo, status="succeeded", started_at=T0, finished_at=T0.replace(minute=3))
    make_push(repo, "main", green, pusher="hubot")
    make_image(green)
    failed = make_build(repo, status="failed", error="compile exited with 2")
    make_push(repo, "feature/x", failed)

    listed = run("builds", "list")
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == [str(failed.id), str(green.id)]
    assert rows[1][3:6] == ["succeeded", "1", "main"]
    assert rows[1][-1] == "3m00s"
    only_failed = json.loads(run("builds", "list", "--status", "failed", "--json").stdout)
    assert [item["id"] for item in only_failed["items"]] == [failed.id]
    by_branch = json.loads(run("builds", "list", "--branch", "main", "--json").stdout)
    assert [item["id"] for item in by_branch["items"]] == [green.id]
    paged = run("builds", "list", "--limit", "1")
    assert "more: --cursor" in paged.stderr

    shown = run("builds", "show", str(green.id))
    assert shown.exit_code == 0
    assert f"sha:        {green.sha}" in shown.stdout
    assert "@sha256:" in shown.stdout
    assert "role web:   bin/web" in shown.stdout
    assert "hubot" in shown.stdout
    assert "compile exited with 2" in run("builds", "show", str(failed.id)).stdout
    assert json.loads(run("builds", "show", str(green.id), "--json").stdout)["id"] == green.id
    missing = run("builds", "show", "9999")
    assert (missing.exit_code, "build_not_found" in missing.stderr) == (1, True)


def test_builds_logs_prints_the_whole_log(
    run, make_repository: MakeRepository, make_build: MakeBuild
) -> None:  # type: ignore[no-untyped-def]
    build = make_build(make_repository(), status="failed")
    with session_scope() as session:
        logs.append(session, build.id, 1, "step 1\n")
        logs.append(session, build.id, 1, "step 2 failed\n")
    result = run("builds", "logs", str(build.id))
    assert result.exit_code == 0
    assert result.stdout == "step 1\nstep 2 failed\n"


def test_builds_logs_follow_streams_until_the_build_ends(
    run, make_repository: MakeRepository, make_build: MakeBuild
) -> None:  # type: ignore[no-untyped-def]
    build = make_build(make_repository(), status="running")
    with session_scope() as session:
        logs.append(session, build.id, 1, "fetching\n")

    def worker() -> None:
        time.sleep(0.3)
        with session_scope() as session:
            logs.append(session, build.id, 1, "compiling\n")
        with session_scope() as session:
            transition(session, build.id, BuildStatus.SUCCEEDED)

    thread = threading.Thread(target=worker)
    thread.start()
    result = run("builds", "logs", str(build.id), "--follow")
    thread.join()
    assert result.exit_code == 0, result.output
    assert result.stdout == "fetching\ncompiling\n"
    assert f"build {build.id} succeeded" in result.stderr


def test_builds_retry_and_cancel(
    run, make_repository: MakeRepository, make_build: MakeBuild
) -> None:  # type: ignore[no-untyped-def]
    repo = make_repository()
    failed, running = make_build(repo, status="failed"), make_build(repo, status="running")

    retried = run("builds", "retry", str(failed.id))
    assert retried.exit_code == 0, retried.output
    assert retried.stdout.strip() == f"build {failed.id} queued (attempt 2)"
    cancelled = run("builds", "cancel", str(running.id))
    assert cancelled.stdout.strip() == f"build {running.id} cancelled: Cancelled by tests"

    again = run("builds", "cancel", str(running.id))
    assert again.exit_code == 1
    assert "invalid_transition, HTTP 409" in again.stderr


def test_repo_latest_green(
    run, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:  # type: ignore[no-untyped-def]
    repo = make_repository()
    green = make_build(repo, status="succeeded", finished_at=T0)
    make_push(repo, "release/1.x", green)
    result = run("repo", "latest-green", "octo/app", "release/1.x")
    assert result.exit_code == 0, result.output
    assert f"sha:       {green.sha}" in result.stdout
    none = run("repo", "latest-green", "octo/app", "main")
    assert (none.exit_code, "no_green_build" in none.stderr) == (1, True)
