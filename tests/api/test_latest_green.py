from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.builds import queries
from app.config import get_settings
from tests.support.factories import MakeBuild, MakeImage, MakePush, MakeRepository

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _latest(client: TestClient, branch: str, repo: str = "octo/app") -> dict[str, object]:
    response = client.get(f"/api/v1/repos/{repo}/branches/{branch}/latest-green")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _error(client: TestClient, branch: str, repo: str = "octo/app") -> tuple[int, str]:
    response = client.get(f"/api/v1/repos/{repo}/branches/{branch}/latest-green")
    return response.status_code, response.json()["error"]["code"]


def test_latest_green_is_the_newest_push_not_the_last_build_to_finish(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    repo = make_repository()
    older = make_build(repo, status="succeeded", finished_at=T0 + timedelta(minutes=9))
    newer = make_build(repo, status="succeeded", finished_at=T0 + timedelta(minutes=5))
    make_push(repo, "main", older)
    newest_push = make_push(repo, "main", newer)

    body = _latest(client, "main")
    assert body["sha"] == newer.sha
    assert body["build_id"] == newer.id
    assert body["push_id"] == newest_push.id
    assert body["finished_at"] == (T0 + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")


def test_pushes_whose_builds_are_not_green_are_skipped(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    repo = make_repository()
    green = make_build(repo, status="succeeded", finished_at=T0)
    make_push(repo, "main", green)
    for status in ("failed", "running", "queued", "errored", "cancelled"):
        make_push(repo, "main", make_build(repo, status=status))
    make_push(repo, "main", None)  # filtered out: no build at all
    assert _latest(client, "main")["sha"] == green.sha


def test_a_force_push_back_to_an_older_green_sha_makes_it_latest(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    repo = make_repository()
    old = make_build(repo, status="succeeded", finished_at=T0)
    new = make_build(repo, status="succeeded", finished_at=T0 + timedelta(minutes=1))
    make_push(repo, "main", old)
    make_push(repo, "main", new)
    assert _latest(client, "main")["sha"] == new.sha

    rollback = make_push(repo, "main", old, before=new.sha, forced=True)
    body = _latest(client, "main")
    assert (body["sha"], body["push_id"]) == (old.sha, rollback.id)


def test_branches_are_independent_and_may_contain_slashes(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    repo = make_repository()
    on_main = make_build(repo, status="succeeded", finished_at=T0)
    on_feature = make_build(repo, status="succeeded", finished_at=T0)
    make_push(repo, "main", on_main)
    make_push(repo, "feature/team/login", on_feature)
    make_push(repo, None, on_feature, tag="v1.0")

    assert _latest(client, "main")["sha"] == on_main.sha
    assert _latest(client, "feature/team/login")["sha"] == on_feature.sha
    assert _latest(client, "feature/team/login", repo="Octo/APP")["repository"] == "octo/app"
    assert _error(client, "feature/team") == (404, "no_green_build")


def test_a_deleted_branch_has_no_latest_green_until_pushed_again(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    repo = make_repository()
    green = make_build(repo, status="succeeded", finished_at=T0)
    make_push(repo, "topic", green)
    make_push(repo, "topic", deleted=True)
    assert _error(client, "topic") == (404, "branch_deleted")

    # Recreated at a commit still building: nothing green since the deletion.
    building = make_build(repo, status="running")
    make_push(repo, "topic", building)
    assert _error(client, "topic") == (404, "branch_deleted")

    # Recreated at the old green commit: green again.
    make_push(repo, "topic", green)
    assert _latest(client, "topic")["sha"] == green.sha


def test_image_reference_goes_through_the_proxy_by_digest(
    client: TestClient,
    make_repository: MakeRepository,
    make_build: MakeBuild,
    make_push: MakePush,
    make_image: MakeImage,
) -> None:
    repo = make_repository()
    without_image = make_build(repo, status="succeeded", finished_at=T0)
    make_push(repo, "main", without_image)
    body = _latest(client, "main")
    assert (body["image"], body["roles"]) == (None, {})

    with_image = make_build(repo, status="succeeded", finished_at=T0)
    image = make_image(with_image, name="octo-app")
    make_push(repo, "main", with_image)
    body = _latest(client, "main")
    assert body["image"] == {
        "name": "octo-app",
        "tag": with_image.sha,
        "digest": image.manifest_digest,
        "reference": f"{get_settings().proxy_host}/octo-app@{image.manifest_digest}",
    }
    assert body["roles"] == {"web": "bin/web", ".shell": "/bin/sh -l"}
    assert body["stop_signals"] == {"web": "TERM", ".shell": "TERM"}


def test_unknown_repository_and_branch_without_builds(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    repo = make_repository()
    make_push(repo, "main", make_build(repo, status="failed"))
    assert _error(client, "main", repo="octo/unknown") == (404, "repository_not_found")
    assert _error(client, "main", repo="OCTO/App") == (404, "no_green_build")
    assert _error(client, "main") == (404, "no_green_build")
    assert _error(client, "never-pushed") == (404, "no_green_build")


def test_latest_green_query_walks_the_branch_index(
    session: Session, make_repository: MakeRepository
) -> None:
    repo = make_repository()
    # A long, busy main: statistics that tempt the planner to walk the primary key backwards
    # (fine for main, a full scan for a branch last pushed long ago).
    session.execute(
        text(
            "INSERT INTO pushes (repository_id, ref, branch, before_sha, after_sha, forced,"
            " created, deleted, decision, received_at)"
            " SELECT :repo, 'refs/heads/main', 'main', repeat('0', 40), repeat('a', 40),"
            " false, false, false, 'filtered', now() FROM generate_series(1, 5000)"
        ),
        {"repo": repo.id},
    )
    session.commit()
    session.execute(text("ANALYZE pushes"))
    for statement in (
        queries.latest_green_statement(repo.id, "main"),
        queries.latest_green_by_name_statement("octo/app", "main"),
    ):
        sql = statement.compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        plan = "\n".join(session.execute(text(f"EXPLAIN {sql}")).scalars())
        assert "ix_pushes_branch_history" in plan, plan
        assert "pk_pushes" not in plan, plan
    session.rollback()
