"""Query plans that must not depend on when a statement was first prepared."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db import get_engine


def test_connections_plan_each_execution_with_the_current_table_sizes(database_url: str) -> None:
    # A generic plan cached while a table was empty kept scanning it whole once it had grown.
    with get_engine().connect() as connection:
        assert connection.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"


def test_superseding_reads_the_active_builds_index(session: Session, make_repository) -> None:  # type: ignore[no-untyped-def]
    from app.builds.queueing import _SUPERSEDED_CANDIDATES

    repository = make_repository("octo/app")
    compiled = _SUPERSEDED_CANDIDATES.compile(dialect=session.get_bind().dialect)
    params = {"repository_id": repository.id, "branch": "main", "before_push_id": 10**9}
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(
        row[0]
        for row in session.connection().exec_driver_sql(
            f"EXPLAIN {compiled.string}", compiled.construct_params(params)
        )
    )
    assert "ix_builds_active" in plan
