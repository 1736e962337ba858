"""Sending a build's commit statuses: in order, at least once, never regressing.

Only the newest unsent post of a build is sent (GitHub shows only the latest status of a
context, so older unsent ones are skipped), and not when it would repeat or undo what GitHub
already shows. Post ids follow the order of the build's transitions: each post is inserted after
the conditional UPDATE of the build row, which holds that row's lock until commit.

The HTTP request is made while the build's queued posts are locked (SELECT .. FOR UPDATE), so a
concurrent send of the same build waits instead of overtaking it. Other builds, the API and
the build's own transitions are not blocked: transitions only insert new posts. This is the one
transaction that stays open across a network call, bounded by `github_timeout_seconds`: a claim
(a conditional UPDATE marking the post as being sent, with an expiry) would free the transaction,
but a concurrent send would then have to give up and be scheduled again instead of waiting its
turn and sending, which is what keeps a build's statuses in order without a retry's delay.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.config import get_settings
from app.github.client import CommitStatus, GitHubClient, get_github_client
from app.github.errors import GitHubError, RateLimited, TransientGitHubError
from app.models import Build, Repository, StatusPost
from app.models.base import utcnow
from app.models.status_post import SendState
from app.statuses import queries
from app.statuses.service import enqueue_send


class SendResult(enum.StrEnum):
    NOTHING = "nothing"
    SENT = "sent"
    SKIPPED = "skipped"
    # Waiting for an earlier post's retry time or a rate-limit reset; a retry is scheduled.
    DEFERRED = "deferred"
    RETRY = "retry"
    FAILED = "failed"


def backoff_seconds(tries: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter, so builds that failed together do not retry together."""
    ceiling = min(cap, base * 2 ** max(0, tries - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def send_newest(
    session: Session, build_id: int, *, connect: Callable[[], GitHubClient] = get_github_client
) -> SendResult:
    """Sends the build's newest unsent status. The caller commits."""
    posts = queries.lock_queued_posts(session, build_id)
    if not posts:
        return SendResult.NOTHING
    *older, newest = posts
    # The waits are read before the older posts are skipped: a post that replaces one waiting
    # out a backoff or a rate limit waits as long (skipping clears the older post's retry time,
    # and a skipped post no longer holds back the other builds).
    now = utcnow()
    pause = queries.rate_limit_pause(session, now)
    holding = max(
        (p for p in older if p.next_try_at is not None and p.next_try_at > now),
        key=lambda p: p.next_try_at or now,
        default=None,
    )
    scheduled = newest.next_try_at
    if holding is not None:
        _inherit_wait(newest, holding)
    for post in older:
        _skip(post, f"superseded by status post {newest.id}")

    waits = [p for p in (pause, newest.next_try_at) if p is not None]
    wait_until = max(waits, default=None)
    if wait_until is not None and wait_until > now:
        if scheduled is None or scheduled < wait_until:
            newest.next_try_at = wait_until
            enqueue_send(session, build_id, countdown=(wait_until - now).total_seconds())
        return SendResult.DEFERRED

    redundant = _why_redundant(newest, queries.last_sent(session, build_id))
    if redundant:
        _skip(newest, redundant)
        return SendResult.SKIPPED
    return _send(session, newest, connect)


def _inherit_wait(newest: StatusPost, older: StatusPost) -> None:
    """The newest post takes over the wait of the older one it replaces; a rate limit's answer
    code comes along, so that every build still sees the installation-wide pause."""
    if newest.next_try_at is None or (
        older.next_try_at is not None and newest.next_try_at < older.next_try_at
    ):
        newest.next_try_at = older.next_try_at
        if older.response_code in queries.RATE_LIMIT_CODES:
            newest.response_code = older.response_code
            newest.last_error = older.last_error


def _why_redundant(post: StatusPost, last: StatusPost | None) -> str | None:
    if last is None:
        return None
    if last.id > post.id:
        return f"older than the sent status post {last.id}"
    if _shown(last) == _shown(post):
        return f"unchanged since status post {last.id}"
    if last.attempt == post.attempt and last.state != "pending" and post.state == "pending":
        return f"would replace the final status post {last.id} of the same attempt"
    return None


def _shown(post: StatusPost) -> tuple[str, str, str, str | None]:
    return (post.state, post.description, post.context, post.target_url)


def _send(session: Session, post: StatusPost, connect: Callable[[], GitHubClient]) -> SendResult:
    settings = get_settings()
    build = session.get(Build, post.build_id)
    assert build is not None  # posts are deleted with their build
    repo = session.get(Repository, build.repository_id)
    assert repo is not None
    status = CommitStatus(post.state, post.context, post.description, post.target_url)
    post.tries += 1
    try:
        connect().create_status(repo.full_name, build.sha, status)
    except RateLimited as exc:
        return _retry(session, post, exc, datetime.fromtimestamp(exc.retry_at, UTC))
    except TransientGitHubError as exc:
        if post.tries >= settings.github_status_max_tries:
            exc.reason = f"gave up after {post.tries} tries: {exc.reason}"
            return _fail(post, exc)
        delay = backoff_seconds(
            post.tries,
            settings.github_status_retry_base_seconds,
            settings.github_status_retry_max_seconds,
        )
        return _retry(session, post, exc, utcnow() + timedelta(seconds=delay))
    except GitHubError as exc:
        return _fail(post, exc)
    post.send_state = SendState.SENT
    post.sent_at = utcnow()
    post.response_code = 201
    post.last_error = None
    post.next_try_at = None
    return SendResult.SENT


def _retry(session: Session, post: StatusPost, exc: GitHubError, at: datetime) -> SendResult:
    post.response_code = exc.status_code
    post.last_error = exc.reason
    post.next_try_at = at
    countdown = (at - utcnow()).total_seconds()
    enqueue_send(session, post.build_id, countdown=countdown)
    return SendResult.RETRY


def _fail(post: StatusPost, exc: GitHubError) -> SendResult:
    post.send_state = SendState.FAILED
    post.response_code = exc.status_code
    post.last_error = exc.reason
    post.next_try_at = None
    return SendResult.FAILED


def _skip(post: StatusPost, reason: str) -> None:
    post.send_state = SendState.SKIPPED
    post.skip_reason = reason
    post.next_try_at = None


def redrive(session: Session) -> int:
    """Re-enqueues sends that are due but apparently lost (a retry message that never
    arrived, a worker that died). Duplicates are harmless: sending is per build and locked."""
    grace = timedelta(seconds=get_settings().github_status_redrive_seconds)
    build_ids = queries.due_build_ids(session, utcnow() - grace)
    for build_id in build_ids:
        enqueue_send(session, build_id)
    return len(build_ids)
