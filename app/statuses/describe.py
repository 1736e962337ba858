"""What a build looks like on GitHub: its commit status state and a one-line description."""

from __future__ import annotations

import unicodedata

from sqlalchemy.orm import Session

from app.models import Build, BuildStatus, Push

# GitHub answers 422 to a longer description.
MAX_DESCRIPTION_LENGTH = 140
ELLIPSIS = "…"

STATE_FOR: dict[BuildStatus, str] = {
    BuildStatus.QUEUED: "pending",
    BuildStatus.RUNNING: "pending",
    BuildStatus.SUCCEEDED: "success",
    BuildStatus.FAILED: "failure",
    BuildStatus.ERRORED: "error",
    BuildStatus.CANCELLED: "error",
}


def fit_description(text: str, limit: int = MAX_DESCRIPTION_LENGTH) -> str:
    """One line of printable text, at most `limit` characters, cut with an ellipsis."""
    printable = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    line = " ".join(printable.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - len(ELLIPSIS)].rstrip()
    # A combining mark left at the end would attach to the ellipsis.
    while cut and unicodedata.combining(cut[-1]):
        cut = cut[:-1]
    return cut + ELLIPSIS


def format_duration(seconds: float) -> str:
    """1h 2m 3s, 1m 23s, 45s."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def describe(session: Session, build: Build) -> tuple[str, str]:
    """The (state, description) GitHub should show for the build as it is now."""
    status = BuildStatus(build.status)
    return STATE_FOR[status], fit_description(_description(session, build, status))


def _description(session: Session, build: Build, status: BuildStatus) -> str:
    if status is BuildStatus.QUEUED:
        return "Queued" if build.attempt <= 1 else f"Queued (attempt {build.attempt})"
    if status is BuildStatus.RUNNING and build.quorum_deadline_at is not None:
        return "Built; waiting for the image to reach enough registry replicas"
    if status is BuildStatus.RUNNING:
        return f"Building on {build.build_host}" if build.build_host else "Building"
    if status is BuildStatus.SUCCEEDED:
        if build.started_at and build.finished_at:
            elapsed = (build.finished_at - build.started_at).total_seconds()
            return f"Built in {format_duration(elapsed)}"
        return "Built"
    if status is BuildStatus.FAILED:
        return build.error or "Build failed"
    if status is BuildStatus.ERRORED:
        return build.error or "Build errored"
    return _cancel_reason(session, build)


def _cancel_reason(session: Session, build: Build) -> str:
    if build.superseded_by_push_id is not None:
        push = session.get(Push, build.superseded_by_push_id)
        if push is not None:
            return f"Superseded by {push.after_sha[:7]}"
    return build.cancel_reason or "Cancelled"
