from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.support.factories import MakeBuild, MakePush, MakeRepository, new_sha

URL = "/api/v1/builds"


def _ids(client: TestClient, **params: object) -> list[int]:
    response = client.get(URL, params=params)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_lists_newest_first_with_repository_and_branches(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    repo = make_repository()
    older = make_build(repo, status="succeeded")
    newer = make_build(repo, status="running", build_host="host-2")
    make_push(repo, "main", older)
    make_push(repo, "feature/x", newer)
    make_push(repo, "main", newer)

    items = client.get(URL).json()["items"]
    assert [item["id"] for item in items] == [newer.id, older.id]
    assert items[0]["repository"] == "octo/app"
    assert items[0]["branches"] == ["feature/x", "main"]
    assert items[0]["status"] == "running"
    assert items[0]["build_host"] == "host-2"
    assert items[0]["sha"] == newer.sha


def test_filters_by_repository_branch_and_status(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    app, lib = make_repository("octo/app"), make_repository("octo/lib")
    on_main = make_build(app, status="failed")
    on_feature = make_build(app, status="errored")
    elsewhere = make_build(lib, status="failed")
    make_push(app, "main", on_main)
    make_push(app, "feature/deep/name", on_feature)
    make_push(lib, "main", elsewhere)

    assert _ids(client, repository="octo/app") == [on_feature.id, on_main.id]
    assert _ids(client, branch="main") == [elsewhere.id, on_main.id]
    assert _ids(client, repository="octo/app", branch="main") == [on_main.id]
    assert _ids(client, branch="feature/deep/name") == [on_feature.id]
    assert _ids(client, status="failed") == [elsewhere.id, on_main.id]
    assert _ids(client, status=["failed", "errored"], repository="octo/app") == [
        on_feature.id,
        on_main.id,
    ]
    assert _ids(client, status="succeeded") == []


def test_filters_by_full_sha_or_prefix(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    repo = make_repository()
    target = make_build(repo, sha=new_sha("abcdef12"))
    sibling = make_build(repo, sha=new_sha("abcdef13"))
    assert _ids(client, sha=target.sha) == [target.id]
    assert _ids(client, sha=target.sha.upper()) == [target.id]
    assert _ids(client, sha="abcdef1") == [sibling.id, target.id]
    assert _ids(client, sha="abcdef12") == [target.id]
    assert _ids(client, sha="abcdef12", repository="octo/app") == [target.id]


def test_filters_by_queue_time(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    repo = make_repository()
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    early = make_build(repo, queued_at=base)
    middle = make_build(repo, queued_at=base + timedelta(hours=1))
    late = make_build(repo, queued_at=base + timedelta(hours=2))

    since = (base + timedelta(minutes=30)).isoformat()
    until = (base + timedelta(hours=2)).isoformat()
    assert _ids(client, since=since) == [late.id, middle.id]
    assert _ids(client, until=until) == [middle.id, early.id]
    assert _ids(client, since=since, until=until) == [middle.id]
    # A time without an offset is UTC.
    assert _ids(client, since="2026-03-01T12:30:00") == [late.id, middle.id]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"sha": "abc123"}, 422, "validation_error"),
        ({"sha": "xyz1234"}, 422, "validation_error"),
        ({"status": "exploded"}, 422, "validation_error"),
        ({"since": "yesterday"}, 422, "validation_error"),
        ({"repository": "no-slash"}, 422, "validation_error"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400, "invalid_filter"),
        ({"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
        ({"limit": 0}, 400, "invalid_limit"),
        ({"limit": 501}, 400, "invalid_limit"),
        ({"repository": "octo/unknown"}, 404, "repository_not_found"),
    ],
)
def test_bad_filters_are_refused_with_a_code(
    client: TestClient, params: dict[str, object], status: int, code: str
) -> None:
    response = client.get(URL, params=params)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_cursor_pages_stay_stable_while_new_builds_arrive(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    repo = make_repository()
    builds = [make_build(repo) for _ in range(7)]
    expected = [build.id for build in reversed(builds)]

    first = client.get(URL, params={"limit": 3}).json()
    for _ in range(4):
        make_build(repo)  # arrives between page requests
    seen = [item["id"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(URL, params={"limit": 3, "cursor": cursor}).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
    assert seen == expected


def test_an_exact_last_page_has_no_next_cursor(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    repo = make_repository()
    for _ in range(4):
        make_build(repo)
    first = client.get(URL, params={"limit": 2}).json()
    second = client.get(URL, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None


@pytest.mark.usefixtures("reads_need_token")
def test_listing_needs_a_token_when_reads_are_protected(
    client: TestClient, auth: dict[str, str]
) -> None:
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(URL, headers=auth).status_code == 200
