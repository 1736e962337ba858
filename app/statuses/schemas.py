from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class StatusPostOut(BaseModel):
    """One commit status owed to GitHub and what became of it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    build_id: int
    attempt: int
    state: str
    context: str
    description: str
    target_url: str | None
    send_state: str
    skip_reason: str | None
    tries: int
    next_try_at: datetime | None
    response_code: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class BuildStatusesOut(BaseModel):
    build_id: int
    items: list[StatusPostOut]
