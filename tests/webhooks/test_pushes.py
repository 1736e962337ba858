"""What a push records and builds: branches, tags, deletions, filters, shared SHAs, re-pushes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK
from app.builds.lifecycle import transition
from app.config import get_settings
from app.models import Build, BuildStatus, OutboxMessage, Push, Repository
from tests.support.github import ZERO_SHA, push_payload
from tests.webhooks.conftest import Deliver

SHA_A, SHA_B = "a1" * 20, "b2" * 20


def _push(session: Session, push_id: int) -> Push:
    session.expire_all()
    push = session.get(Push, push_id)
    assert push is not None
    return push


def _build(session: Session, build_id: int) -> Build:
    session.expire_all()
    build = session.get(Build, build_id)
    assert build is not None
    return build


def _outbox(session: Session) -> list[OutboxMessage]:
    session.expire_all()
    return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_a_branch_push_records_the_push_and_enqueues_one_build_job(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    answer = deliver("push", push_payload("octo/app", after=SHA_A, pusher="mona")).json()

    assert answer["outcome"] == "accepted"
    assert (answer["build_status"], answer["build_attempt"]) == ("queued", 1)
    push = _push(session, answer["push_id"])
    assert (push.branch, push.tag, push.after_sha, push.decision) == ("main", None, SHA_A, "built")
    assert (push.pusher, push.head_commit_message) == ("mona", "Change things")
    build = _build(session, answer["build_id"])
    assert (build.sha, build.status) == (SHA_A, "queued")
    (job,) = _outbox(session)
    assert (job.task_name, job.args, job.queue) == (
        BUILD_TASK,
        [build.id],
        get_settings().build_queue,
    )


def test_a_force_push_builds(deliver: Deliver, make_repository, session: Session) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    answer = deliver("push", push_payload("octo/app", after=SHA_B, forced=True)).json()
    assert answer["outcome"] == "accepted"
    assert _push(session, answer["push_id"]).forced
    assert _build(session, answer["build_id"]).sha == SHA_B


def test_a_branch_creation_builds(deliver: Deliver, make_repository, session: Session) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    payload = push_payload("octo/app", ref="refs/heads/new", before=ZERO_SHA, after=SHA_A)
    answer = deliver("push", payload).json()
    assert answer["outcome"] == "accepted"
    assert _push(session, answer["push_id"]).created


@pytest.mark.parametrize("flagged", [True, False])
def test_a_branch_deletion_is_recorded_without_a_build(
    deliver: Deliver,
    make_repository,
    session: Session,
    counts: Callable[[], dict[str, int]],
    flagged: bool,
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    payload = push_payload("octo/app", ref="refs/heads/feature/gone", deleted=True)
    payload["deleted"] = flagged  # older senders only zero the after SHA
    answer = deliver("push", payload).json()

    assert answer["outcome"] == "recorded"
    assert answer["detail"] == "branch feature/gone deleted"
    push = _push(session, answer["push_id"])
    assert (push.branch, push.deleted, push.after_sha, push.decision) == (
        "feature/gone",
        True,
        ZERO_SHA,
        "deleted",
    )
    assert push.build_id is None
    assert counts() == {"webhook_deliveries": 1, "pushes": 1, "builds": 0, "outbox": 0}


def test_branch_names_keep_their_slashes(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    answer = deliver("push", push_payload("octo/app", ref="refs/heads/feature/login/v2")).json()
    assert answer["outcome"] == "accepted"
    assert _push(session, answer["push_id"]).branch == "feature/login/v2"


def test_a_sha_is_built_once_whichever_branches_point_at_it(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    first = deliver("push", push_payload("octo/app", after=SHA_A)).json()
    second = deliver("push", push_payload("octo/app", ref="refs/heads/copy", after=SHA_A)).json()

    assert first["build_id"] == second["build_id"]
    assert (first["detail"], second["detail"]) == ("build created", "build existing")
    assert _push(session, second["push_id"]).build_id == first["build_id"]
    assert len(_outbox(session)) == 1


def test_the_same_sha_in_two_repositories_is_two_builds(deliver: Deliver, make_repository) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    make_repository("octo/fork")
    one = deliver("push", push_payload("octo/app", after=SHA_A)).json()
    two = deliver("push", push_payload("octo/fork", after=SHA_A)).json()
    assert one["build_id"] != two["build_id"]


def test_tags_are_recorded_without_a_build_unless_the_repository_builds_tags(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    make_repository("octo/tagged", build_tags=True)

    skipped = deliver("push", push_payload("octo/app", ref="refs/tags/v1.0", after=SHA_A)).json()
    assert skipped["outcome"] == "recorded"
    push = _push(session, skipped["push_id"])
    assert (push.tag, push.branch, push.decision, push.build_id) == (
        "v1.0",
        None,
        "tag_skipped",
        None,
    )

    built = deliver("push", push_payload("octo/tagged", ref="refs/tags/v1.0", after=SHA_A)).json()
    assert built["outcome"] == "accepted"
    assert _push(session, built["push_id"]).build_id == built["build_id"]
    assert len(_outbox(session)) == 1


def test_other_refs_are_recorded_without_a_build(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    answer = deliver("push", push_payload("octo/app", ref="refs/notes/commits")).json()
    assert answer["outcome"] == "recorded"
    assert counts() == {"webhook_deliveries": 1, "pushes": 1, "builds": 0, "outbox": 0}


def test_branch_filters_record_a_filtered_push_without_a_build(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", branch_filters=["main", "release/*"])

    filtered = deliver("push", push_payload("octo/app", ref="refs/heads/feature/x")).json()
    assert filtered["outcome"] == "filtered"
    push = _push(session, filtered["push_id"])
    assert (push.decision, push.build_id) == ("filtered", None)

    for branch in ("main", "release/1.2"):
        answer = deliver("push", push_payload("octo/app", ref=f"refs/heads/{branch}")).json()
        assert answer["outcome"] == "accepted", branch
    # Branch names are case-sensitive, like git's.
    assert deliver("push", push_payload("octo/app", ref="refs/heads/Main")).json()["outcome"] == (
        "filtered"
    )
    assert len(_outbox(session)) == 2


def test_a_cancelled_build_pushed_again_is_queued_as_a_new_attempt(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    first = deliver("push", push_payload("octo/app", after=SHA_A)).json()
    assert transition(session, first["build_id"], BuildStatus.CANCELLED, cancel_reason="by hand")
    session.commit()

    again = deliver("push", push_payload("octo/app", ref="refs/heads/other", after=SHA_A)).json()

    assert again["build_id"] == first["build_id"]
    assert (again["build_status"], again["build_attempt"], again["detail"]) == (
        "queued",
        2,
        "build requeued",
    )
    build = _build(session, first["build_id"])
    assert (build.status, build.attempt, build.cancel_reason, build.finished_at) == (
        "queued",
        2,
        None,
        None,
    )
    assert [job.args for job in _outbox(session)] == [[build.id], [build.id]]


@pytest.mark.parametrize("final", [BuildStatus.FAILED, BuildStatus.ERRORED, BuildStatus.SUCCEEDED])
def test_a_finished_build_pushed_again_is_not_rebuilt(
    deliver: Deliver, make_repository, session: Session, final: BuildStatus
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    first = deliver("push", push_payload("octo/app", after=SHA_A)).json()
    assert transition(session, first["build_id"], BuildStatus.RUNNING)
    assert transition(session, first["build_id"], final)
    session.commit()

    again = deliver("push", push_payload("octo/app", ref="refs/heads/other", after=SHA_A)).json()

    assert again["outcome"] == "accepted"
    assert (again["build_id"], again["build_status"], again["build_attempt"]) == (
        first["build_id"],
        final.value,
        1,
    )
    assert _build(session, first["build_id"]).status == final.value
    assert len(_outbox(session)) == 1


def test_a_minimal_push_with_iso_timestamps_is_accepted(deliver: Deliver, make_repository) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    payload = {
        "ref": "refs/heads/main",
        "before": ZERO_SHA,
        "after": SHA_A.upper(),
        "repository": {
            "full_name": "octo/app",
            "pushed_at": "2026-11-27T05:00:00Z",
            "created_at": "2020-01-01T00:00:00+02:00",
        },
        "head_commit": {"id": SHA_A, "timestamp": 1795000000},
    }
    answer = deliver("push", payload).json()
    assert answer["outcome"] == "accepted"
    assert answer["build_id"] is not None


@pytest.mark.parametrize(
    "broken",
    [
        {"ref": None},
        {"before": None},
        {"after": "not-a-sha"},
        {"after": "a" * 39},
        {"repository": None},
        {"repository": {"name": "app"}},
        {"repository": {"full_name": "no-slash"}},
    ],
)
def test_a_push_lacking_what_a_push_must_have_is_400_and_not_recorded(
    deliver: Deliver,
    make_repository,
    counts: Callable[[], dict[str, int]],
    broken: dict[str, object],
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    payload = push_payload("octo/app")
    for key, value in broken.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    response = deliver("push", payload)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_push_payload"
    assert {problem["field"].split(".")[0] for problem in error["details"]["errors"]} == set(broken)
    assert counts() == {"webhook_deliveries": 0, "pushes": 0, "builds": 0, "outbox": 0}


def test_a_repository_is_looked_up_whatever_the_case_of_its_name(
    deliver: Deliver, make_repository, session: Session
) -> None:  # type: ignore[no-untyped-def]
    repository: Repository = make_repository("Octo/App")
    answer = deliver("push", push_payload("octo/app")).json()
    assert answer["outcome"] == "accepted"
    assert _push(session, answer["push_id"]).repository_id == repository.id
