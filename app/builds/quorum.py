"""Builds that wait for their image to reach the replica quorum.

A build whose image was built, pushed and verified on some replicas but not on enough of them is
not errored at once: a replica that blinked is caught up by the repair job within a minute. The
build stays `running` with a deadline (`replica_quorum_wait_seconds`) and no worker; each repair
and each health check settles the waiting builds: green once the quorum holds, `errored` with the
replicas' report once the deadline has passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.builds import lifecycle, logs
from app.models import Build, BuildStatus, Image
from app.models.base import utcnow
from app.registries.replication import presence_report, quorum_met


@dataclass
class Settled:
    succeeded: list[int] = field(default_factory=list)
    errored: list[int] = field(default_factory=list)


def settle_waiting_builds(session: Session, *, now: datetime | None = None) -> Settled:
    """Finishes the builds waiting for their replica quorum that can be finished. The caller
    commits."""
    now = now or utcnow()
    waiting = session.execute(
        select(Build.id, Build.attempt, Build.quorum_deadline_at, Image.id.label("image_id"))
        .join(Image, Image.build_id == Build.id)
        .where(Build.status == BuildStatus.RUNNING, Build.quorum_deadline_at.is_not(None))
        .order_by(Build.id)
        .with_for_update(of=Build, skip_locked=True)
    ).all()
    settled = Settled()
    for row in waiting:
        if quorum_met(session, row.image_id):
            note = f"==> replica quorum met: {presence_report(session, row.image_id)}\n"
            if lifecycle.finish(session, row.id, row.attempt, BuildStatus.SUCCEEDED, error=None):
                logs.append(session, row.id, row.attempt, note)
                settled.succeeded.append(row.id)
        elif row.quorum_deadline_at <= now:
            error = (
                "image not verified on enough replicas by the deadline: "
                f"{presence_report(session, row.image_id)}"
            )
            if lifecycle.finish(session, row.id, row.attempt, BuildStatus.ERRORED, error=error):
                logs.append(session, row.id, row.attempt, f"==> errored: {error}\n")
                settled.errored.append(row.id)
    return settled
