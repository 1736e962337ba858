"""Comparing each repository's branch heads with GitHub's, and recording what webhooks missed.

A repository is reconciled in three steps, and no transaction stays open across the request to
GitHub: read what Cartridge knows (its branch heads and the branch listing GitHub sent last
time), ask GitHub for the listing with the ETag of each page, then record in one transaction a
recovered push for every branch whose head moved, through the same code path as a webhook push
(one build per repository and SHA). A head is moved only from the value read in the first step:
a webhook that arrived during the request has the last word, and the next pass looks again.

The first pass over a repository adopts GitHub's heads without building them (registering a
repository with 500 branches must not queue 500 builds); only the default branch's head is built,
if it has no build yet. A listing GitHub answers with 304 on every page costs no rate limit and
writes nothing but the time of the check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from app.builds import heads
from app.builds.queueing import PushValues, branch_is_built, queue_push, record_push
from app.github.client import BranchListing, BranchPage, GitHubClient
from app.github.errors import GitHubError, RateLimited
from app.models import (
    PushDecision,
    PushSource,
    ReconcileOutcome,
    Repository,
)
from app.models.base import utcnow
from app.reconcile import queries

log = logging.getLogger(__name__)

ZERO_SHA = "0" * 40

SessionFactory = Callable[[], Session]


@dataclass(frozen=True)
class RecoveredPush:
    """A push Cartridge recorded because GitHub's head differed from the known one."""

    branch: str
    before: str
    after: str
    push_id: int
    deleted: bool = False
    build_id: int | None = None
    build_status: str | None = None


@dataclass
class RepositoryResult:
    repository_id: int
    full_name: str
    outcome: ReconcileOutcome
    reconciled_at: datetime
    requests: int = 0
    branches: int = 0
    recovered: list[RecoveredPush] = field(default_factory=list)
    adopted: int = 0
    # Branches whose head moved while GitHub was asked: left to the webhook, or the next pass.
    raced: list[str] = field(default_factory=list)
    error: str | None = None
    retry_at: datetime | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "branches": self.branches,
            "recovered": [asdict(push) for push in self.recovered],
            "adopted": self.adopted,
            "raced": self.raced,
            "error": self.error,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
        }


@dataclass(frozen=True)
class Known:
    """What Cartridge knew of a repository before asking GitHub."""

    full_name: str
    first_pass: bool
    pages: list[BranchPage]
    heads: dict[str, str | None]


def reconcile_repository(
    sessions: SessionFactory,
    client: GitHubClient,
    repository_id: int,
    *,
    known: Known | None = None,
    unchanged: list[int] | None = None,
) -> RepositoryResult:
    """Reconciles one repository and commits what it found. `known` is what Cartridge knew,
    when the caller read it already (`read_known`). A listing GitHub did not change is
    appended to `unchanged` for the caller to mark in one statement, or marked at once."""
    known = known or read_known(sessions, [repository_id]).get(repository_id)
    if known is None:
        raise LookupError(f"repository {repository_id} is gone")
    sent_before = client.requests.sent
    try:
        listing = client.list_branches(known.full_name, known.pages)
    except GitHubError as exc:
        result = _failure(repository_id, known.full_name, exc, client.requests.sent - sent_before)
        with sessions() as session, session.begin():
            queries.save_reconciliation(
                session,
                repository_id,
                outcome=result.outcome,
                summary=result.summary(),
                listing=None,
                at=result.reconciled_at,
            )
        if isinstance(exc, RateLimited):
            raise
        return result
    now = utcnow()
    if not listing.changed and not known.first_pass:
        if unchanged is not None:
            unchanged.append(repository_id)
        else:
            with sessions() as session, session.begin():
                queries.mark_unchanged(session, [repository_id], now)
        return RepositoryResult(
            repository_id,
            known.full_name,
            ReconcileOutcome.UNCHANGED,
            now,
            requests=listing.requests,
            branches=len(listing.heads),
        )
    with sessions() as session, session.begin():
        result = _record(session, repository_id, known, listing, now)
        queries.save_reconciliation(
            session,
            repository_id,
            outcome=result.outcome,
            summary=result.summary(),
            listing=[page.as_json() for page in listing.pages],
            at=now,
        )
    for push in result.recovered:
        log.info(
            "recovered %s of %s: %s -> %s",
            "deletion" if push.deleted else "push",
            f"{known.full_name}:{push.branch}",
            push.before[:7],
            push.after[:7],
        )
    return result


def read_known(sessions: SessionFactory, repository_ids: list[int]) -> dict[int, Known]:
    """What Cartridge knows of each repository, in three queries whatever their number."""
    with sessions() as session, session.begin():
        names = queries.full_names(session, repository_ids)
        reconciliations = queries.reconciliations_of(session, repository_ids)
        known_heads = heads.known_heads_of(session, repository_ids)
    known: dict[int, Known] = {}
    for repository_id, full_name in names.items():
        reconciliation = reconciliations.get(repository_id)
        # A repository whose listing was never read (GitHub failed each time) is still new.
        never_listed = reconciliation is None or (
            not reconciliation.listing
            and reconciliation.outcome in (ReconcileOutcome.FAILED, ReconcileOutcome.RATE_LIMITED)
        )
        pages = (
            [BranchPage.from_json(page) for page in reconciliation.listing]
            if (reconciliation is not None)
            else []
        )
        known[repository_id] = Known(
            full_name, never_listed, pages, known_heads.get(repository_id, {})
        )
    return known


def _failure(
    repository_id: int, full_name: str, exc: GitHubError, requests: int
) -> RepositoryResult:
    now = utcnow()
    if isinstance(exc, RateLimited):
        retry_at = datetime.fromtimestamp(exc.retry_at, UTC)
        return RepositoryResult(
            repository_id,
            full_name,
            ReconcileOutcome.RATE_LIMITED,
            now,
            requests=requests,
            error=exc.reason,
            retry_at=retry_at,
        )
    return RepositoryResult(
        repository_id, full_name, ReconcileOutcome.FAILED, now, requests=requests, error=exc.reason
    )


def _record(
    session: Session,
    repository_id: int,
    known: Known,
    listing: BranchListing,
    now: datetime,
) -> RepositoryResult:
    repository = session.get(Repository, repository_id)
    assert repository is not None  # deleting a repository deletes its reconciliation too
    github = listing.heads
    result = RepositoryResult(
        repository_id,
        known.full_name,
        ReconcileOutcome.IN_SYNC,
        now,
        requests=listing.requests,
        branches=len(github),
    )
    for branch, sha in sorted(github.items()):
        before = known.heads.get(branch)
        if before == sha:
            continue
        if known.first_pass and not _builds_on_adoption(session, repository, branch, sha):
            if _move(session, repository_id, branch, known, sha):
                result.adopted += 1
            continue
        if not branch_is_built(repository, branch):
            continue
        if not _still(session, repository_id, branch, known):
            result.raced.append(branch)
            continue
        result.recovered.append(_recover_push(session, repository, branch, before, sha))
    for branch, last in sorted(known.heads.items()):
        if last is None or branch in github:
            continue
        if known.first_pass:
            if _move(session, repository_id, branch, known, None):
                result.adopted += 1
            continue
        if not _still(session, repository_id, branch, known):
            result.raced.append(branch)
            continue
        result.recovered.append(_recover_deletion(session, repository, branch, last))
    if known.first_pass:
        result.outcome = ReconcileOutcome.ADOPTED
    elif result.recovered:
        result.outcome = ReconcileOutcome.RECOVERED
    return result


def _builds_on_adoption(session: Session, repository: Repository, branch: str, sha: str) -> bool:
    """On the first pass only the default branch's head is built, and only if it never was."""
    return (
        branch == repository.default_branch
        and branch_is_built(repository, branch)
        and not queries.has_build(session, repository.id, sha)
    )


def _move(session: Session, repository_id: int, branch: str, known: Known, sha: str | None) -> bool:
    return heads.move_head(
        session,
        repository_id,
        branch,
        expected=known.heads.get(branch),
        known=branch in known.heads,
        sha=sha,
        push_id=None,
    )


def _still(session: Session, repository_id: int, branch: str, known: Known) -> bool:
    """Locks the branch's head and tells whether it is still what was read before asking
    GitHub: a webhook that moved it meanwhile has the last word."""
    return heads.lock_head(
        session,
        repository_id,
        branch,
        expected=known.heads.get(branch),
        known=branch in known.heads,
    )


def _push_values(
    repository: Repository, branch: str, before: str | None, after: str, *, deleted: bool
) -> PushValues:
    return PushValues(
        repository_id=repository.id,
        webhook_delivery_id=None,
        ref=f"refs/heads/{branch}",
        branch=branch,
        tag=None,
        before_sha=before or ZERO_SHA,
        after_sha=after,
        # The listing cannot tell a force push from a fast-forward, nor who pushed.
        forced=False,
        created=before is None,
        deleted=deleted,
        pusher=None,
        head_commit_message=None,
        decision=PushDecision.DELETED if deleted else PushDecision.BUILT,
        source=PushSource.RECONCILER,
        # Seen now: it happened before, but after every push Cartridge knew of on the branch.
        pushed_at=utcnow(),
    )


def _recover_push(
    session: Session, repository: Repository, branch: str, before: str | None, sha: str
) -> RecoveredPush:
    push = _push_values(repository, branch, before, sha, deleted=False)
    queued = queue_push(session, repository, push)
    return RecoveredPush(
        branch,
        push["before_sha"],
        sha,
        queued.push_id,
        build_id=queued.build_id,
        build_status=queued.status,
    )


def _recover_deletion(
    session: Session, repository: Repository, branch: str, before: str
) -> RecoveredPush:
    push = _push_values(repository, branch, before, ZERO_SHA, deleted=True)
    push_id = record_push(session, push).push_id
    return RecoveredPush(branch, before, ZERO_SHA, push_id, deleted=True)
