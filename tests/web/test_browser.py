"""The pages in a real browser (Debian's chromium through Playwright) against a real server:
seeded data for the list and line links, real builds on a real worker for the live log,
a cut connection, hostile input and Cancel."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.auth.service import create_token
from app.broker import get_celery
from app.builds.lifecycle import transition
from app.config import get_settings
from app.db import session_scope
from app.events.announce import announce_build_change
from app.models import Build, BuildStatus, Repository
from app.models.base import utcnow
from app.outbox.relay import reset_relay
from tests.builds.helpers import sample_files, wait_for
from tests.conftest import WEBHOOK_SECRET
from tests.support.github import ZERO_SHA, encode, push_payload, webhook_headers
from tests.support.seed import Seeded, seed
from tests.support.server import serve
from tests.support.tcp_proxy import tcp_proxy
from tests.support.worker import run_worker

pytestmark = pytest.mark.e2e

Page = Any
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
LINES = 30
TICKING_COMPILE = f"""#!/bin/sh
echo 'hostile {HOSTILE}'
i=1
while [ $i -le {LINES} ]; do echo "line $i"; i=$((i + 1)); sleep 0.25; done
"""
SLOW_COMPILE = "#!/bin/sh\necho compile started\nsleep 120\n"


@pytest.fixture
def seeded(session: Session) -> Seeded:
    result = seed(session)
    session.commit()
    return result


@pytest.fixture
def server(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


def log_lines(page: Page) -> list[str]:
    return page.eval_on_selector_all("#log .line .text", "rows => rows.map(r => r.textContent)")


def not_pwned(page: Page) -> None:
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.script_errors == []


def test_list_filters_change_the_url_and_the_rows(page: Page, server: str, seeded: Seeded) -> None:
    page.goto(f"{server}/builds")
    assert page.locator("tbody tr").count() == 5
    page.select_option("select[name=status]", "failed")
    page.wait_for_url(re.compile(r"/builds\?.*status=failed"))
    page.wait_for_function("document.querySelectorAll('tbody tr').length === 1")
    assert "Checkout v2" in page.locator("tbody").inner_text()
    page.fill("input[name=repo]", "octo/api")
    page.select_option("select[name=status]", "")
    page.wait_for_url(re.compile(r"repo=octo%2Fapi"))
    page.wait_for_function("document.querySelectorAll('tbody tr').length === 2")
    assert "Retry webhook sends" in page.locator("tbody").inner_text()
    # The URL is the state: loading it again shows the same rows.
    page.reload()
    assert page.locator("tbody tr").count() == 2
    page.go_back()
    page.wait_for_url(re.compile(r"status=failed"))


def test_rows_update_live_and_new_builds_appear(page: Page, server: str, seeded: Seeded) -> None:
    running = seeded.builds["running"]
    page.goto(f"{server}/builds?repo=octo/shop")
    assert page.get_attribute(f"#build-row-{running.id}", "data-status") == "running"
    page.wait_for_timeout(500)  # the page's event stream is open
    with session_scope() as session:
        transition(session, running.id, BuildStatus.SUCCEEDED, finished_at=utcnow())
    page.wait_for_selector(f"#build-row-{running.id}[data-status=succeeded]")
    with session_scope() as session:
        fresh = Build(repository_id=seeded.repositories["shop"].id, sha="f" * 40)
        elsewhere = Build(repository_id=seeded.repositories["api"].id, sha="e" * 40)
        session.add_all([fresh, elsewhere])
        session.flush()
        announce_build_change(session, fresh.id)
        announce_build_change(session, elsewhere.id)
    page.wait_for_selector(f"tbody tr:first-child#build-row-{fresh.id}")
    page.wait_for_timeout(1000)
    # A build of another repository is not this list's.
    assert page.locator(f"#build-row-{elsewhere.id}").count() == 0
    not_pwned(page)


def test_line_links_highlight_lines_and_ranges(page: Page, server: str, seeded: Seeded) -> None:
    build_id = seeded.builds["green"].id
    page.goto(f"{server}/builds/{build_id}#L3")
    page.wait_for_selector("#L3.hl")
    highlighted = page.eval_on_selector_all(".line.hl", "rows => rows.map(r => r.id)")
    assert highlighted == ["L3"]
    assert "fetch 0.84s" in page.inner_text("#L3")
    page.goto(f"{server}/builds/{build_id}#L10-L12")
    page.wait_for_selector("#L12.hl")
    highlighted = page.eval_on_selector_all(".line.hl", "rows => rows.map(r => r.id)")
    assert highlighted == ["L10", "L11", "L12"]
    # Clicking a number links it; shift-clicking another makes a range.
    page.click("#L5 a.ln")
    page.click("#L7 a.ln", modifiers=["Shift"])
    assert page.evaluate("location.hash") == "#L5-L7"
    highlighted = page.eval_on_selector_all(".line.hl", "rows => rows.map(r => r.id)")
    assert highlighted == ["L5", "L6", "L7"]
    # ANSI colours become classes, not text.
    assert page.locator("#log .ansi-green-fg").count() >= 1
    assert "\x1b" not in "".join(log_lines(page))


def test_a_big_log_starts_with_its_tail_and_loads_the_rest(
    page: Page, server: str, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.builds import logs
    from app.web import views

    monkeypatch.setattr(views, "TAIL_CHARS", 4000)
    build = seeded.builds["cancelled"]
    with session_scope() as session:
        for start in range(0, 3000, 100):  # chunks of 100 lines, as flushes would write them
            logs.append(
                session, build.id, 1, "".join(f"row {n}\n" for n in range(start + 1, start + 101))
            )

    def rows() -> list[tuple[int, str]]:
        found = page.eval_on_selector_all(
            "#log .line", "rows => rows.map(r => [r.id, r.querySelector('.text').textContent])"
        )
        return [(int(row_id[1:]), text) for row_id, text in found]

    page.goto(f"{server}/builds/{build.id}")
    page.wait_for_function(
        "document.getElementById('log-state').textContent.startsWith('finished')"
    )
    tail = rows()
    assert tail[0][0] > 1
    assert tail[-1] == (3000, "row 3000")
    assert all(text == f"row {number}" for number, text in tail)  # numbered as in the whole log
    page.click("#log-earlier")
    page.wait_for_function("document.querySelectorAll('#log .line').length === 3000")
    page.wait_for_function(
        "document.getElementById('log-state').textContent.startsWith('finished')"
    )
    assert rows() == [(n, f"row {n}") for n in range(1, 3001)]
    # A link to a line before the tail loads the whole log and goes there.
    page.goto(f"{server}/builds/{build.id}#L5")
    page.wait_for_selector("#L5.hl")
    assert page.inner_text("#L5 .text") == "row 5"


@pytest.fixture
def live_installation(
    session: Session,
    build_env: dict[str, str],
    set_build_env: Callable[..., None],
    tmp_path: Path,
) -> Iterator[str]:
    """A worker on queues of this test only and an API server, as in production."""
    run = uuid.uuid4().hex[:8]
    set_build_env(build_queue=f"builds-{run}", default_queue=f"cartridge-{run}")
    get_celery.cache_clear()
    reset_relay()
    from app.main import create_app

    settings = get_settings()
    with (
        run_worker(build_env, tmp_path, queues=f"{settings.build_queue},{settings.default_queue}"),
        serve(create_app()) as url,
    ):
        yield url


def push(api: str, repository: Repository, sha: str, branch: str, message: str) -> int:
    payload = push_payload(
        repository.full_name,
        after=sha,
        before=ZERO_SHA,
        clone_url=repository.clone_url,
        ref=f"refs/heads/{branch}",
    )
    payload["head_commit"]["message"] = message
    body = encode(payload)
    answer = httpx.post(
        f"{api}/webhooks/github",
        content=body,
        headers=webhook_headers("push", body, WEBHOOK_SECRET),
    )
    assert answer.status_code in (200, 202), answer.text
    return int(answer.json()["build_id"])


def status_of(session: Session, build_id: int) -> str:
    session.expire_all()
    return session.get_one(Build, build_id).status


def test_a_running_build_shows_its_log_line_by_line_through_a_cut_connection(
    page: Page,
    session: Session,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    live_installation: str,
) -> None:
    sha = push_commit(sample_repository, sample_files({"container/compile": TICKING_COMPILE}))
    branch = f"topic/{HOSTILE}"
    build_id = push(live_installation, sample_repository, sha, branch, f"Ship it {HOSTILE}")
    numbered = re.compile(r"^line (\d+)$")

    def numbers() -> list[int]:
        return [int(m.group(1)) for text in log_lines(page) if (m := numbered.match(text))]

    with tcp_proxy(live_installation) as proxy:
        page.goto(f"{proxy.url}/builds/{build_id}")
        # The first lines arrive while the build is still running: live, not at the end.
        wait_for("the first compile lines", lambda: len(numbers()) >= 3, timeout=120)
        assert status_of(session, build_id) == BuildStatus.RUNNING
        assert len(numbers()) < LINES
        # The network drops the page's connections (the log stream among them) mid-build.
        assert proxy.cut_connections() >= 1
        seen_at_cut = len(numbers())
        wait_for("the stream to reconnect", lambda: len(numbers()) > seen_at_cut + 2, timeout=30)
        page.wait_for_function(
            "document.getElementById('log-state').textContent.startsWith('finished')",
            timeout=120_000,
        )
        assert page.inner_text("#log-state") == "finished: succeeded"
        assert seen_at_cut < LINES
        # The build's summary refreshes itself when the build finishes (through the proxy,
        # which is still up here).
        page.wait_for_selector("#build-summary .status-succeeded")
        summary = page.inner_text("#build-summary")

    assert numbers() == list(range(1, LINES + 1))  # each line once, in order, none missing
    assert status_of(session, build_id) == BuildStatus.SUCCEEDED
    hostile_line = [text for text in log_lines(page) if text.startswith("hostile ")]
    assert hostile_line == [f"hostile {HOSTILE}"]
    assert page.locator("#log img").count() == 0
    not_pwned(page)
    assert branch in summary
    assert f"Ship it {HOSTILE}" in summary
    page.goto(f"{live_installation}/builds")
    assert f"Ship it {HOSTILE}" in page.inner_text("tbody")
    assert branch in page.inner_text("tbody")
    page.goto(f"{live_installation}/repos/{sample_repository.full_name}")
    assert branch in page.inner_text("main")
    not_pwned(page)


def test_cancel_from_the_page_cancels_the_running_build(
    page: Page,
    session: Session,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    live_installation: str,
) -> None:
    sha = push_commit(sample_repository, sample_files({"container/compile": SLOW_COMPILE}))
    build_id = push(live_installation, sample_repository, sha, "main", "Slow one")
    wait_for("the build to run", lambda: status_of(session, build_id) == "running", timeout=60)

    # Signed out: no buttons, and a post forged without the CSRF token is refused.
    page.goto(f"{live_installation}/builds/{build_id}")
    page.wait_for_selector("#log .line")
    assert page.locator("button", has_text="Cancel").count() == 0
    assert page.locator("button", has_text="Retry").count() == 0
    forged = page.request.post(f"{live_installation}/builds/{build_id}/cancel", max_redirects=0)
    assert forged.status == 403
    assert status_of(session, build_id) == BuildStatus.RUNNING

    _, raw = create_token(session, "mona")
    session.commit()
    page.click("text=Sign in")
    page.fill("#token", raw)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_installation}/")
    assert raw not in page.url
    page.goto(f"{live_installation}/builds/{build_id}")
    page.click("button:has-text('Cancel')")
    page.wait_for_url(f"{live_installation}/builds/{build_id}")
    wait_for("the cancel", lambda: status_of(session, build_id) == "cancelled", timeout=30)
    page.wait_for_selector("#build-summary .status-cancelled")
    assert "Cancelled by mona" in page.inner_text("#build-summary")
    assert page.locator("button", has_text="Retry").count() == 1
    page.wait_for_function(
        "document.getElementById('log-state').textContent.startsWith('finished')"
    )
    not_pwned(page)


@pytest.mark.usefixtures("reads_need_token")
def test_signed_in_pages_stream_logs_when_reads_need_a_token(
    page: Page, server: str, seeded: Seeded, write_token: str
) -> None:
    build_id = seeded.builds["failed"].id
    page.goto(f"{server}/builds/{build_id}")
    page.wait_for_url(re.compile(r"/sign-in\?next="))
    page.fill("#token", write_token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/builds/{build_id}")
    page.wait_for_function(
        "document.getElementById('log-state').textContent === 'finished: failed'"
    )
    assert "db/schema.rb is out of date" in page.inner_text("#log")
    not_pwned(page)
