"""Recording the commit statuses a build owes GitHub, in the transaction that changed the build.

`record_status` notes the build; when the transaction commits, the status for the build's state
at that moment is inserted just before the commit (`record_owed_statuses`, called by the unit of
work in `app.db`). Recording at commit
rather than at the call means that what the same transaction changes after the transition (the
next attempt number of a retry, an error message) is part of the status, and that several moves
in one transaction owe GitHub only the last one. Post ids still follow the order of a build's
transitions: the transition's conditional UPDATE holds the build row's lock until this commit.
"""

from __future__ import annotations

import math

from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Build, StatusPost
from app.outbox.service import enqueue
from app.statuses.describe import describe

SEND_TASK = "cartridge.statuses.send"
_OWED_KEY = "cartridge.status_builds"


def target_url(build_id: int) -> str:
    return f"{get_settings().public_url.rstrip('/')}/api/v1/builds/{build_id}"


def record_status(session: Session, build: Build | int) -> None:
    """Records, when this transaction commits, the status GitHub should show for the build (a row
    or its id), and enqueues sending it. Call it after every change of the build's status
    (`transition` does) and when a build is created. Nothing is recorded without credentials."""
    if get_settings().github_statuses_enabled:
        build_id = build if isinstance(build, int) else build.id
        # A dict keeps the order of first mention and mentions each build once.
        session.info.setdefault(_OWED_KEY, {})[build_id] = None


def record_owed_statuses(session: Session) -> None:
    """Inserts the status owed by each build noted by `record_status` in this transaction, and
    enqueues sending it. Called just before the transaction commits."""
    build_ids = session.info.pop(_OWED_KEY, None)
    if not build_ids:
        return
    session.flush()
    for build_id in build_ids:
        # Reloaded: statements after the transition may have changed the row behind the ORM.
        build = session.get(Build, build_id, populate_existing=True)
        if build is not None:
            _record(session, build)


def forget_owed_statuses(session: Session) -> None:
    """Forgets the builds noted in a transaction that rolled back."""
    session.info.pop(_OWED_KEY, None)


def _record(session: Session, build: Build) -> StatusPost:
    state, description = describe(session, build)
    post = StatusPost(
        build_id=build.id,
        attempt=build.attempt,
        state=state,
        context=get_settings().github_status_context,
        description=description,
        target_url=target_url(build.id),
    )
    session.add(post)
    session.flush()
    enqueue_send(session, build.id)
    return post


def enqueue_send(session: Session, build_id: int, *, countdown: float = 0) -> None:
    """SendState runs per build (the newest unsent post wins), so the task takes the build."""
    enqueue(
        session,
        SEND_TASK,
        [build_id],
        queue=get_settings().default_queue,
        countdown=max(0, math.ceil(countdown)),
    )
