"""Applying the retention policy: plan what goes, take it out of service, delete it by digest.

Deleting an image is two steps. In the transaction that decides it, the image is marked deleting
(latest green, the API and the repair job stop offering it) and one `image_deletions` row per
replica is recorded with its job (outbox). Each job then sends
`DELETE /v2/<path>/manifests/<digest>` to its replica outside any transaction; 202 (deleted) and
404 (never there) count as done, 405 means deletes are disabled on that replica (reported, not
retried), anything else is retried with backoff. Never by tag: on Distribution 2.8 that fails, and
a digest delete removes every tag of that digest anyway. Space comes back when the replica's
garbage collector runs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.config import Settings
from app.models import DeletionState, Image, ImageDeletion, ImageReplica
from app.models.base import utcnow
from app.outbox.service import enqueue
from app.registries import queries as registry_queries
from app.retention import queries
from app.retention.policy import RetentionPolicy, Verdict, evaluate

DELETE_TASK = "cartridge.images.delete"
PRUNE_TASK = "cartridge.images.prune"


@dataclass(frozen=True)
class RepositoryPlan:
    repository: str
    policy: RetentionPolicy
    verdicts: list[Verdict]

    @property
    def to_delete(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.kept]


def plan(
    session: Session, settings: Settings, *, repository: str | None = None
) -> list[RepositoryPlan]:
    """Every repository's verdicts under its policy, without changing anything."""
    now = utcnow()
    plans = []
    for row in queries.repositories(session, repository):
        policy = RetentionPolicy.of(settings, row.retention)
        verdicts = evaluate(
            queries.live_images(session, row.id), queries.pushes(session, row.id), policy, now
        )
        plans.append(RepositoryPlan(row.full_name, policy, verdicts))
    return plans


def apply(
    session: Session, settings: Settings, *, limit: int, repository: str | None = None
) -> list[int]:
    """Marks at most `limit` images deleting and queues their deletion on every replica.
    Returns their ids. Only flushes: the caller commits, which sends the jobs."""
    deleting: list[int] = []
    registries = registry_queries.list_registries(session)
    for repository_plan in plan(session, settings, repository=repository):
        for verdict in repository_plan.to_delete:
            if len(deleting) >= limit:
                return deleting
            image = verdict.image
            if not queries.mark_deleting(session, image.image_id, utcnow()):
                continue
            reason = _reason(repository_plan.policy)
            for registry in registries:
                deletion = ImageDeletion(
                    image_id=image.image_id,
                    registry_id=registry.id,
                    registry_name=registry.name,
                    image_name=image.name,
                    manifest_digest=image.manifest_digest,
                    reason=reason,
                )
                session.add(deletion)
                session.flush()
                enqueue(session, DELETE_TASK, [deletion.id], queue=settings.default_queue)
            if not registries:
                _finish_image(session, image.image_id)
            deleting.append(image.image_id)
    return deleting


def record_attempt(
    session: Session,
    deletion: ImageDeletion,
    *,
    status_code: int | None,
    error: str | None,
    settings: Settings,
) -> DeletionState:
    """Records one try's answer and decides what follows. Only flushes."""
    deletion.tries += 1
    deletion.response_code = status_code
    deletion.last_error = error
    if status_code in (202, 404):
        deletion.state = DeletionState.DONE
    elif status_code == 405:
        deletion.state = DeletionState.REFUSED
        deletion.last_error = (
            "the replica has deletes disabled (storage.delete.enabled: false in its config)"
        )
    elif deletion.tries >= settings.image_delete_max_tries:
        deletion.state = DeletionState.FAILED
    else:
        ceiling = min(3600.0, 5.0 * 2 ** (deletion.tries - 1))
        countdown = math.ceil(ceiling / 2 + random.uniform(0, ceiling / 2))
        enqueue(
            session,
            DELETE_TASK,
            [deletion.id],
            queue=settings.default_queue,
            countdown=countdown,
        )
    if deletion.state is not DeletionState.QUEUED:
        deletion.finished_at = utcnow()
        if deletion.registry_id is not None and deletion.state is DeletionState.DONE:
            session.query(ImageReplica).filter_by(
                image_id=deletion.image_id, registry_id=deletion.registry_id
            ).delete()
    session.flush()
    if queries.deletions_not_done(session, deletion.image_id) == 0:
        _finish_image(session, deletion.image_id)
    return deletion.state


def _finish_image(session: Session, image_id: int) -> None:
    image = session.get(Image, image_id)
    if image is not None and image.deleted_at is None:
        image.deleted_at = utcnow()
        session.flush()


def _reason(policy: RetentionPolicy) -> str:
    return (
        "no retention rule keeps it: not pinned, not a branch's latest green, not among the last "
        f"{policy.keep_last} of its branches, older than {policy.keep_days} days, not pulled in "
        f"the last {policy.keep_pulled_days} days, not the repository's newest image"
    )
