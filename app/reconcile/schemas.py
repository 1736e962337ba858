"""What the reconciler answers: one repository's reconciliation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.models import ReconcileOutcome, RepositoryReconciliation
from app.reconcile.service import RepositoryResult


class RecoveredPushOut(BaseModel):
    branch: str
    before: str = Field(description="The head Cartridge knew (zeros: a branch new to it)")
    after: str = Field(description="GitHub's head (zeros: the branch was deleted)")
    push_id: int
    deleted: bool
    build_id: int | None = None
    build_status: str | None = None


class ReconciliationOut(BaseModel):
    """The comparison of a repository's branch heads with GitHub's."""

    repository: str
    outcome: ReconcileOutcome
    reconciled_at: datetime
    requests: int = Field(description="Requests made to GitHub (304s included)")
    branches: int = Field(description="Branches GitHub lists")
    recovered: list[RecoveredPushOut] = Field(
        description="Pushes and deletions recorded because no webhook had told of them"
    )
    adopted: int = Field(description="First pass: heads taken as known without building")
    raced: list[str] = Field(
        description="Branches a webhook moved while GitHub was asked; the next pass looks again"
    )
    error: str | None = None
    retry_at: datetime | None = None

    @classmethod
    def of(cls, result: RepositoryResult) -> ReconciliationOut:
        summary = result.summary()
        return cls(
            repository=result.full_name,
            outcome=result.outcome,
            reconciled_at=result.reconciled_at,
            requests=result.requests,
            branches=result.branches,
            recovered=[RecoveredPushOut(**push) for push in summary["recovered"]],
            adopted=result.adopted,
            raced=result.raced,
            error=result.error,
            retry_at=result.retry_at,
        )


class LastReconciliation(BaseModel):
    """When the reconciler last compared the repository with GitHub, and what it found."""

    reconciled_at: datetime
    outcome: ReconcileOutcome
    recovered_pushes: int
    error: str | None = None

    @classmethod
    def of(cls, row: RepositoryReconciliation | None) -> LastReconciliation | None:
        if row is None:
            return None
        summary: dict[str, Any] = row.summary or {}
        recovered = summary.get("recovered")
        return cls(
            reconciled_at=row.reconciled_at,
            outcome=row.outcome,
            recovered_pushes=len(recovered) if isinstance(recovered, list) else 0,
            error=summary.get("error"),
        )
