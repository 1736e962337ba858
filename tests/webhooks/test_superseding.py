"""A newer push to a branch cancels that branch's older queued or running builds."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.builds.lifecycle import transition
from app.models import Build, BuildStatus
from tests.support.github import push_payload
from tests.webhooks.conftest import Deliver

SHA_A, SHA_B, SHA_C, SHA_D = ("a1" * 20, "b2" * 20, "c3" * 20, "d4" * 20)


def _send(deliver: Deliver, branch: str, sha: str, full_name: str = "octo/app") -> dict[str, Any]:
    response = deliver("push", push_payload(full_name, ref=f"refs/heads/{branch}", after=sha))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _build(session: Session, build_id: int) -> Build:
    session.expire_all()
    build = session.get(Build, build_id)
    assert build is not None
    return build


def test_a_newer_push_cancels_the_branchs_queued_and_running_builds(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    running = _send(deliver, "feature/x", SHA_A)["build_id"]
    assert transition(session, running, BuildStatus.RUNNING, build_host="host-1")
    session.commit()
    queued = _send(deliver, "feature/x", SHA_B)["build_id"]
    assert _build(session, running).status == "cancelled"

    newest = _send(deliver, "feature/x", SHA_C)

    assert newest["superseded_build_ids"] == [queued]
    for build_id in (running, queued):
        build = _build(session, build_id)
        assert build.status == "cancelled"
        assert build.finished_at is not None
    assert _build(session, queued).cancel_reason == f"Superseded by {SHA_C[:7]}"
    assert _build(session, queued).superseded_by_push_id == newest["push_id"]
    assert _build(session, newest["build_id"]).status == "queued"


def test_finished_builds_and_other_branches_are_left_alone(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    done = _send(deliver, "feature/x", SHA_A)["build_id"]
    transition(session, done, BuildStatus.RUNNING)
    transition(session, done, BuildStatus.SUCCEEDED)
    session.commit()
    elsewhere = _send(deliver, "feature/y", SHA_B)["build_id"]

    assert _send(deliver, "feature/x", SHA_C)["superseded_build_ids"] == []
    assert _build(session, done).status == "succeeded"
    assert _build(session, elsewhere).status == "queued"


def test_the_default_branch_is_protected_by_default(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", default_branch="trunk")
    first = _send(deliver, "trunk", SHA_A)["build_id"]
    assert _send(deliver, "trunk", SHA_B)["superseded_build_ids"] == []
    assert _build(session, first).status == "queued"


def test_configured_protected_branches_replace_the_default(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", protected_branches=["release/*"])
    release = _send(deliver, "release/1", SHA_A)["build_id"]
    main = _send(deliver, "main", SHA_B)["build_id"]

    assert _send(deliver, "release/1", SHA_C)["superseded_build_ids"] == []
    assert _send(deliver, "main", SHA_D)["superseded_build_ids"] == [main]
    assert _build(session, release).status == "queued"


def test_a_repository_may_keep_superseded_builds(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", cancel_superseded=False)
    first = _send(deliver, "feature/x", SHA_A)["build_id"]
    assert _send(deliver, "feature/x", SHA_B)["superseded_build_ids"] == []
    assert _build(session, first).status == "queued"


def test_a_build_still_at_the_head_of_another_branch_is_not_cancelled(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    shared = _send(deliver, "feature/a", SHA_A)["build_id"]
    assert _send(deliver, "feature/b", SHA_A)["build_id"] == shared

    assert _send(deliver, "feature/a", SHA_B)["superseded_build_ids"] == []
    assert _build(session, shared).status == "queued"

    # Once feature/b moves on too, nothing wants the shared build any more.
    assert _send(deliver, "feature/b", SHA_C)["superseded_build_ids"] == [shared]
    assert _build(session, shared).superseded_by_push_id is not None


def test_a_deleted_branch_no_longer_keeps_its_head_build(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    shared = _send(deliver, "feature/a", SHA_A)["build_id"]
    _send(deliver, "feature/b", SHA_A)
    deleted = push_payload("octo/app", ref="refs/heads/feature/b", deleted=True)
    assert deliver("push", deleted).json()["outcome"] == "recorded"
    assert _build(session, shared).status == "queued"  # a deletion supersedes nothing

    assert _send(deliver, "feature/a", SHA_B)["superseded_build_ids"] == [shared]


def test_a_tag_build_is_not_cancelled_by_a_branch_moving_on(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", build_tags=True)
    shared = _send(deliver, "feature/a", SHA_A)["build_id"]
    tag = deliver("push", push_payload("octo/app", ref="refs/tags/v1", after=SHA_A)).json()
    assert tag["build_id"] == shared

    assert _send(deliver, "feature/a", SHA_B)["superseded_build_ids"] == []
    assert _build(session, shared).status == "queued"


def test_a_superseded_sha_pushed_again_is_rebuilt_and_supersedes_in_turn(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    first = _send(deliver, "feature/x", SHA_A)["build_id"]
    second = _send(deliver, "feature/x", SHA_B)["build_id"]
    assert _build(session, first).status == "cancelled"

    # A force push back to the first commit names the head it overwrote.
    payload = push_payload(
        "octo/app", ref="refs/heads/feature/x", before=SHA_B, after=SHA_A, forced=True
    )
    reverted = deliver("push", payload).json()

    assert reverted["build_id"] == first
    assert (reverted["build_status"], reverted["build_attempt"]) == ("queued", 2)
    assert reverted["superseded_build_ids"] == [second]
    rebuilt = _build(session, first)
    assert (rebuilt.status, rebuilt.superseded_by_push_id, rebuilt.cancel_reason) == (
        "queued",
        None,
        None,
    )


def test_superseding_stays_within_the_repository(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    make_repository("octo/other")
    other = _send(deliver, "feature/x", SHA_A, full_name="octo/other")["build_id"]
    _send(deliver, "feature/x", SHA_B)
    _send(deliver, "feature/x", SHA_C)
    assert _build(session, other).status == "queued"
