"""The parts of GitHub payloads Cartridge reads, validated leniently, and the receiver's answer.

Only the fields Cartridge uses are declared; everything else (timestamps given as epoch numbers
or ISO strings, fields older payloads lack) is ignored rather than validated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.models import DeliveryOutcome

ZERO_SHA = "0" * 40

Sha = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{40}$", to_lower=True)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


FullName = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^/]+/.+$")]


class RepositoryRef(_Lenient):
    full_name: FullName
    clone_url: str | None = None
    default_branch: str | None = None
    # Push payloads give the time of the push in epoch seconds (other events: an ISO string).
    pushed_at: int | float | str | None = None

    @property
    def pushed_time(self) -> datetime | None:
        value = self.pushed_at
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value, UTC)
            if isinstance(value, str) and value:
                parsed = datetime.fromisoformat(value)
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except (ValueError, OverflowError, OSError):
            return None
        return None


class Pusher(_Lenient):
    name: str | None = None


class HeadCommit(_Lenient):
    message: str | None = None


class PushEvent(_Lenient):
    ref: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    before: Sha
    after: Sha
    created: bool = False
    deleted: bool = False
    forced: bool = False
    repository: RepositoryRef
    pusher: Pusher | None = None
    head_commit: HeadCommit | None = None

    @property
    def is_deletion(self) -> bool:
        return self.deleted or self.after == ZERO_SHA

    @property
    def is_creation(self) -> bool:
        return self.created or self.before == ZERO_SHA


class DeliveryResult(BaseModel):
    delivery: str
    event: str
    outcome: DeliveryOutcome
    detail: str | None = None
    repository: str | None = None
    push_id: int | None = None
    build_id: int | None = None
    build_status: str | None = None
    build_attempt: int | None = None
    superseded_build_ids: list[int] = Field(default_factory=list)
