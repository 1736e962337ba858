"""The web pages, rendered by the real app against PostgreSQL: content, escaping, sign-in,
CSRF, and what is (not) shown to whom."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth.service import create_token, revoke_token
from app.builds import logs
from app.models import Build, BuildStatus
from app.web import views
from app.web.auth import CSRF_COOKIE, SESSION_COOKIE
from tests.support.seed import Seeded, seed

VENDOR = Path(__file__).parents[2] / "app" / "web" / "static" / "vendor"
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


@pytest.fixture
def seeded(session: Session) -> Seeded:
    result = seed(session)
    session.commit()
    return result


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, token: str) -> None:
    form = client.get("/sign-in")
    answer = client.post(
        "/sign-in",
        data={"token": token, "csrf_token": csrf_of(form.text), "next": "/builds"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/builds"


def test_every_page_renders_from_the_seeded_installation(
    client: TestClient, seeded: Seeded
) -> None:
    running = seeded.builds["running"]
    green = seeded.builds["green"]
    pages = {
        "/": ["octo/shop", "Running and queued", "Recent failures", "Cart: bulk discounts"],
        "/repos/octo/shop": ["checkout-v2", "Latest green", "octo-shop", "Settings"],
        "/builds": ["Checkout v2: new address form", "hubot", "topic/retry"],
        f"/builds/{green.id}": ["Build #", green.sha, "bin/puma -C config/puma.rb", "Built in 46s"],
        f"/builds/{running.id}": ["running", "fetch", "validate"],
        "/registries": ["r3", "connection refused", "proxy_cache_lock"],
        "/deliveries": ["filtered", "dependabot/npm", "ping"],
    }
    for path, expected in pages.items():
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        for text in expected:
            assert text in answer.text, (path, text)
    image = client.get("/repos/octo/shop").text
    digest = re.search(r'href="/images/(sha256:[0-9a-f]{64})"', image)
    assert digest
    image_page = client.get(f"/images/{digest.group(1)}")
    assert image_page.status_code == 200
    assert "missing" in image_page.text
    assert "present" in image_page.text


def test_unknown_things_are_pages_not_json(client: TestClient, seeded: Seeded) -> None:
    for path in ("/builds/999999", "/repos/octo/nope", "/images/sha256:" + "0" * 64):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")
    assert client.get("/builds?status=bogus").status_code == 400
    assert client.get("/builds?sha=xyz").status_code == 400


def test_pages_are_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/builds" not in paths
    assert "/sign-in" not in paths
    assert "/api/v1/events" in paths


def test_list_filters_and_cursor_pages(client: TestClient, seeded: Seeded) -> None:
    failed = client.get("/builds?status=failed").text
    assert "Checkout v2" in failed
    assert "Cart: bulk discounts" not in failed
    on_main = client.get("/builds?repo=octo/shop&branch=main").text
    assert "Cart: bulk discounts" in on_main
    assert "Checkout v2" not in on_main
    by_sha = client.get(f"/builds?sha={seeded.builds['failed'].sha[:8]}").text
    assert by_sha.count('<tr id="build-row-') == 1
    # A row for live updates: empty when the build does not match the list's filters.
    row = client.get(f"/builds/{seeded.builds['failed'].id}/row?status=failed")
    assert row.status_code == 200
    assert row.text.strip().startswith("<tr")
    assert client.get(f"/builds/{seeded.builds['failed'].id}/row?status=running").status_code == 204


def test_cursor_pagination_walks_every_build_once(
    client: TestClient, session: Session, seeded: Seeded
) -> None:
    repository = seeded.repositories["api"]
    for number in range(60):
        session.add(Build(repository_id=repository.id, sha=f"{number:040x}", status="succeeded"))
    session.commit()
    seen: list[str] = []
    url = "/builds?repo=octo/api"
    while url:
        html = client.get(url).text
        seen += re.findall(r'<tr id="build-row-(\d+)"', html)
        found = re.search(r'href="([^"]+)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert len(seen) == len(set(seen)) == 62


def test_hostile_branch_message_and_log_are_escaped(
    client: TestClient, session: Session, seeded: Seeded
) -> None:
    from app.models import Push

    build = seeded.builds["failed"]
    push = session.query(Push).filter_by(build_id=build.id).one()
    push.branch = f"topic/{HOSTILE}"
    push.head_commit_message = f"Fix {HOSTILE}"
    logs.append(session, build.id, 1, f"{HOSTILE}\n")
    session.commit()
    for path in ("/builds", f"/builds/{build.id}", "/repos/octo/shop", "/"):
        html = client.get(path).text
        assert "<script>window.pwned" not in html, path
        assert "<img src=x" not in html, path
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in client.get("/builds").text


def test_signed_out_visitors_see_no_retry_or_cancel_and_cannot_post(
    client: TestClient, session: Session, seeded: Seeded, write_token: str
) -> None:
    running = seeded.builds["running"]
    page = client.get(f"/builds/{running.id}").text
    assert "/cancel" not in page
    assert "Retry" not in page
    # A forged post: no CSRF token, and no session either.
    forged = client.post(f"/builds/{running.id}/cancel", follow_redirects=False)
    assert forged.status_code == 403
    # With a CSRF token (the visitor's own) but not signed in.
    own_csrf = csrf_of(client.get("/sign-in").text)
    anonymous = client.post(
        f"/builds/{running.id}/cancel", data={"csrf_token": own_csrf}, follow_redirects=False
    )
    assert anonymous.status_code == 401
    session.expire_all()
    assert session.get_one(Build, running.id).status == BuildStatus.RUNNING


def test_signing_in_unlocks_cancel_and_retry_which_need_the_csrf_token(
    client: TestClient, session: Session, seeded: Seeded, write_token: str
) -> None:
    running = seeded.builds["running"]
    sign_in(client, write_token)
    cookie = next(c for c in client.cookies.jar if c.name == SESSION_COOKIE)
    assert write_token not in (cookie.value or "")
    assert cookie.has_nonstandard_attr("HttpOnly")
    page = client.get(f"/builds/{running.id}").text
    assert f'action="/builds/{running.id}/cancel"' in page
    # Signed in, but the post carries no CSRF token: a cross-site form would look like this.
    forged = client.post(f"/builds/{running.id}/cancel", follow_redirects=False)
    assert forged.status_code == 403
    wrong = client.post(
        f"/builds/{running.id}/cancel", data={"csrf_token": "0" * 64}, follow_redirects=False
    )
    assert wrong.status_code == 403
    session.expire_all()
    assert session.get_one(Build, running.id).status == BuildStatus.RUNNING

    cancelled = client.post(
        f"/builds/{running.id}/cancel", data={"csrf_token": csrf_of(page)}, follow_redirects=False
    )
    assert cancelled.status_code == 303
    session.expire_all()
    build = session.get_one(Build, running.id)
    assert build.status == BuildStatus.CANCELLED
    assert build.cancel_reason == "Cancelled by tests"
    page = client.get(f"/builds/{running.id}").text
    assert "Retry" in page
    retried = client.post(
        f"/builds/{running.id}/retry", data={"csrf_token": csrf_of(page)}, follow_redirects=False
    )
    assert retried.status_code == 303
    session.expire_all()
    assert session.get_one(Build, running.id).attempt == 2
    # Cancelling what is not running is refused with a page, not a crash.
    again = client.post(
        f"/builds/{seeded.builds['green'].id}/cancel",
        data={"csrf_token": csrf_of(page)},
        follow_redirects=False,
    )
    assert again.status_code == 409
    assert "can be cancelled" in again.text


def test_a_wrong_or_revoked_token_does_not_sign_in(
    client: TestClient, session: Session, seeded: Seeded
) -> None:
    token, raw = create_token(session, "soon-revoked")
    session.commit()
    form = client.get("/sign-in").text
    wrong = client.post("/sign-in", data={"token": "ctg_nope", "csrf_token": csrf_of(form)})
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.text
    no_csrf = client.post("/sign-in", data={"token": raw}, follow_redirects=False)
    assert no_csrf.status_code == 403
    sign_in(client, raw)
    assert "Signed in as" in client.get("/").text
    revoke_token(session, token.id)
    session.commit()
    assert "Signed in as" not in client.get("/").text
    # An open redirect is not possible through `next`.
    sign_in_page = client.get("/sign-in?next=//evil.example.com/x").text
    assert 'value="/"' in sign_in_page
    assert CSRF_COOKIE in client.cookies


@pytest.mark.usefixtures("reads_need_token")
def test_pages_need_sign_in_when_reads_need_a_token(
    client: TestClient, seeded: Seeded, write_token: str
) -> None:
    answer = client.get("/builds?status=failed", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=%2Fbuilds%3Fstatus%3Dfailed"
    assert client.get("/api/v1/events").status_code == 401
    sign_in(client, write_token)
    assert client.get("/builds").status_code == 200
    # The pages' live log and event stream read the API with the session (EventSource cannot
    # send a bearer token); writes still need one.
    running = seeded.builds["running"]
    assert client.get(f"/api/v1/builds/{running.id}/log").status_code == 200
    with client.stream("GET", "/api/v1/events") as stream:
        assert stream.status_code == 200
    assert client.post(f"/api/v1/builds/{running.id}/cancel").status_code == 401


def test_steps_and_the_failing_step_come_from_the_log(session: Session, seeded: Seeded) -> None:
    failed = seeded.builds["failed"]
    steps = views.steps_of(session, failed, 1)
    assert [(s.name, s.failed) for s in steps] == [
        ("fetch", False),
        ("validate", False),
        ("build", True),
    ]
    green = views.steps_of(session, seeded.builds["green"], 1)
    assert [s.name for s in green] == ["fetch", "validate", "build", "push", "replicas"]
    assert all(not s.failed and s.seconds is not None for s in green)


def test_a_big_log_starts_at_its_tail_with_the_right_line_numbers(
    session: Session, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = seeded.builds["green"]
    monkeypatch.setattr(views, "TAIL_CHARS", 200)
    for number in range(40):
        logs.append(session, build.id, 1, f"extra line {number}\n")
    session.commit()
    start = views.log_start(session, build, 1)
    text = logs.read(session, build.id, 1).content
    assert 0 < start.offset <= start.length - 1
    assert start.length - start.offset <= 200
    assert start.lines_before == text[: start.offset].count("\n")


def test_vendored_files_match_their_recorded_checksums() -> None:
    table = (VENDOR / "README.md").read_text()
    for name, digest in re.findall(r"\| `([^`]+\.js)` \|.*\| `([0-9a-f]{64})` \|", table):
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert len(re.findall(r"\.js` \|", table)) == 2


def test_static_files_are_versioned_by_content(client: TestClient) -> None:
    html = client.get("/sign-in").text
    css = re.search(r'href="(/static/app\.css\?v=[0-9a-f]{12})"', html)
    assert css
    assert client.get(css.group(1)).status_code == 200
