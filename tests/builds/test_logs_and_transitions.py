from __future__ import annotations

from sqlalchemy.orm import Session

from app.builds import logs
from app.builds.transitions import transition
from app.models import Build, BuildStatus, Repository


def _build(session: Session, repository: Repository, sha: str = "c" * 40) -> Build:
    build = Build(repository_id=repository.id, sha=sha)
    session.add(build)
    session.commit()
    return build


def test_transition_is_conditional_on_the_expected_status(
    session: Session, make_repository
) -> None:  # type: ignore[no-untyped-def]
    build = _build(session, make_repository())
    assert transition(session, build.id, BuildStatus.RUNNING, build_host="host-1")
    # A duplicated task that tries the same move finds the build already running: no-op.
    assert not transition(session, build.id, BuildStatus.RUNNING, expected={BuildStatus.QUEUED})
    assert transition(session, build.id, BuildStatus.SUCCEEDED)
    # Illegal moves never happen, whatever the caller expects.
    assert not transition(session, build.id, BuildStatus.QUEUED)
    assert not transition(session, build.id, BuildStatus.CANCELLED)
    session.commit()
    assert session.get(Build, build.id).status == "succeeded"  # type: ignore[union-attr]
    assert session.get(Build, build.id).build_host == "host-1"  # type: ignore[union-attr]


def test_transition_respects_the_attempt(session: Session, make_repository) -> None:  # type: ignore[no-untyped-def]
    build = _build(session, make_repository())
    transition(session, build.id, BuildStatus.RUNNING)
    assert not transition(session, build.id, BuildStatus.FAILED, attempt=2)
    assert transition(session, build.id, BuildStatus.FAILED, attempt=1)


def test_transition_works_alike_on_loaded_and_unloaded_builds(
    session: Session, make_repository
) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository()
    loaded = _build(session, repository, "d" * 40)
    unloaded_id = _build(session, repository, "e" * 40).id
    session.expunge_all()
    loaded = session.get(Build, loaded.id)  # type: ignore[assignment]

    for build_id in (loaded.id, unloaded_id):
        assert transition(session, build_id, BuildStatus.RUNNING, build_host="host-2")
        assert transition(
            session,
            build_id,
            BuildStatus.QUEUED,
            attempt=1,
            next_attempt=2,
            lease_retries=Build.lease_retries + 1,  # an expression, not a value
        )
        assert not transition(session, build_id, BuildStatus.RUNNING, attempt=1)
    # The loaded object was refreshed by the move, without a reload.
    assert (loaded.status, loaded.attempt, loaded.lease_retries) == ("queued", 2, 1)
    assert loaded.build_host == "host-2"
    session.commit()
    session.expunge_all()
    unloaded = session.get(Build, unloaded_id)
    assert unloaded is not None
    assert (unloaded.status, unloaded.attempt, unloaded.lease_retries) == ("queued", 2, 1)
    assert unloaded.build_host == "host-2"


def test_log_reads_from_any_offset_across_chunks(session: Session, make_repository) -> None:  # type: ignore[no-untyped-def]
    build = _build(session, make_repository())
    assert logs.append(session, build.id, 1, "step 1\n") == 7
    assert logs.append(session, build.id, 1, "step 2 ünïcode\n") == 22
    logs.append(session, build.id, 2, "second attempt\n")
    session.commit()

    whole = logs.read(session, build.id, 1)
    assert whole.content == "step 1\nstep 2 ünïcode\n"
    assert whole.next_offset == 22
    tail = logs.read(session, build.id, 1, offset=10)
    assert tail.content == "p 2 ünïcode\n"
    limited = logs.read(session, build.id, 1, offset=3, limit=6)
    assert (limited.content, limited.next_offset) == ("p 1\nst", 9)
    assert logs.read(session, build.id, 1, offset=22).content == ""
    assert logs.read(session, build.id, 2).content == "second attempt\n"
