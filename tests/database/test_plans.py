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
    from app.builds.queueing import _superseded_candidates_query

    repository = make_repository("octo/app")
    params = {"of_repository": repository.id, "branch": "main", "before_push_id": 10**9}
    statement = (
        _superseded_candidates_query()
        .params(**params)
        .compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
    )
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(row[0] for row in session.execute(text(f"EXPLAIN {statement}")))
    assert "ix_builds_active" in plan
