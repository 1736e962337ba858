"""Which images retention keeps, and why: pure rules over a snapshot of one repository.

An image is kept if any rule keeps it:
- `pinned`: an operator pinned it;
- `latest green of <branch>`: deploy tooling may ask for it at any moment;
- `among the last N of <branch>`: recent history, to roll back to;
- `younger than D days`;
- `pulled in the last P days`: deploy hosts use it (the proxy's access log says so: replicas
  never see cache hits);
- `latest green of <branch>, deleted less than G days ago`: a branch deleted by mistake can be
  restored and deployed again;
- `the repository's newest image`: a repository never loses its last image.
An image no rule keeps is deleted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

from app.config import Settings


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 10  # images per branch
    keep_days: int = 30
    keep_pulled_days: int = 7
    deleted_branch_days: int = 14

    @classmethod
    def of(cls, settings: Settings, overrides: dict[str, Any] | None = None) -> RetentionPolicy:
        policy = cls(
            keep_last=settings.retention_keep_last,
            keep_days=settings.retention_keep_days,
            keep_pulled_days=settings.retention_keep_pulled_days,
            deleted_branch_days=settings.retention_deleted_branch_days,
        )
        known = {f.name for f in fields(cls)}
        return replace(policy, **{k: int(v) for k, v in (overrides or {}).items() if k in known})


@dataclass(frozen=True)
class ImageFacts:
    image_id: int
    build_id: int
    name: str
    tag: str
    manifest_digest: str
    created_at: datetime
    pinned: bool
    last_pulled_at: datetime | None


@dataclass(frozen=True)
class PushFacts:
    """A push of the repository, in received order (`push_id`)."""

    push_id: int
    branch: str | None
    deleted: bool
    build_id: int | None
    green: bool  # its build succeeded
    received_at: datetime


@dataclass
class Verdict:
    image: ImageFacts
    kept_by: list[str] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        return bool(self.kept_by)


def evaluate(
    images: list[ImageFacts], pushes: list[PushFacts], policy: RetentionPolicy, now: datetime
) -> list[Verdict]:
    """One verdict per image, newest image first."""
    verdicts = {i.image_id: Verdict(i) for i in sorted(images, key=lambda i: -i.image_id)}
    image_of_build = {i.build_id: i.image_id for i in images}

    def keep(build_id: int | None, rule: str) -> None:
        image_id = image_of_build.get(build_id) if build_id is not None else None
        if image_id is not None and rule not in verdicts[image_id].kept_by:
            verdicts[image_id].kept_by.append(rule)

    for verdict in verdicts.values():
        image = verdict.image
        if image.pinned:
            verdict.kept_by.append("pinned")
        if image.created_at > now - timedelta(days=policy.keep_days):
            verdict.kept_by.append(f"younger than {policy.keep_days} days")
        if image.last_pulled_at and image.last_pulled_at > now - timedelta(
            days=policy.keep_pulled_days
        ):
            verdict.kept_by.append(f"pulled in the last {policy.keep_pulled_days} days")

    by_branch: dict[str, list[PushFacts]] = defaultdict(list)
    for push in sorted(pushes, key=lambda p: p.push_id):
        if push.branch is not None:
            by_branch[push.branch].append(push)
    for branch, history in by_branch.items():
        _keep_for_branch(branch, history, policy, now, keep)

    if verdicts:
        next(iter(verdicts.values())).kept_by.append("the repository's newest image")
    return list(verdicts.values())


def _keep_for_branch(
    branch: str,
    history: list[PushFacts],
    policy: RetentionPolicy,
    now: datetime,
    keep: Any,
) -> None:
    # The branch as it is now begins after its last deletion, if it was ever deleted.
    last_deletion = max((i for i, p in enumerate(history) if p.deleted), default=None)
    if last_deletion is not None and last_deletion == len(history) - 1:
        deletion = history[-1]
        before = [p for p in history[:-1] if p.green and p.build_id is not None]
        if before and deletion.received_at > now - timedelta(days=policy.deleted_branch_days):
            keep(
                before[-1].build_id,
                f"latest green of {branch}, deleted less than "
                f"{policy.deleted_branch_days} days ago",
            )
        return
    current = history[last_deletion + 1 :] if last_deletion is not None else history
    greens = [p for p in current if p.green and p.build_id is not None]
    if greens:
        keep(greens[-1].build_id, f"latest green of {branch}")
    seen: list[int] = []
    for push in reversed(current):
        if push.build_id is not None and push.build_id not in seen:
            seen.append(push.build_id)
    for build_id in seen[: policy.keep_last]:
        keep(build_id, f"among the last {policy.keep_last} of {branch}")
