"""The database engine, shared by the API, the workers and the CLI, and what differs between
PostgreSQL and SQLite. Sessions, and what their commit does, are in `app.db`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.config import get_settings


def build_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # psycopg prepares a statement after a few executions, and PostgreSQL may then keep one
    # generic plan for it, made with the statistics of that moment. On a young or fast-growing
    # table that plan can be a sequential scan run once per row of an outer loop (the push
    # receiver's supersede query did exactly that). Custom plans follow the tables as they grow,
    # for a fraction of a millisecond of planning.
    connect_args = {"options": "-c plan_cache_mode=force_custom_plan"}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def dialect_insert(dialect: str, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING / DO UPDATE (PostgreSQL and
    SQLite). Takes the dialect's name so that statements can be built once per dialect."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no INSERT .. ON CONFLICT support for {dialect}")


def insert_for(session: Session, table: Any) -> Any:
    """`dialect_insert` for the database `session` is bound to."""
    return dialect_insert(session.get_bind().dialect.name, table)


@lru_cache
def get_engine() -> Engine:
    return build_engine(get_settings().resolved_database_url())


def dispose_engine() -> None:
    """Closes the engine's connections and forgets it (tests and the CLI change the settings)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
