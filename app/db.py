"""The unit of work: Cartridge's sessions, and everything that happens when one commits.

Every session comes from `get_session_factory()` (`session_scope()` for workers and the CLI, one
per request in the API). Services only flush; whoever opened the session commits it. What a
commit does besides writing the rows is declared here, on this factory, and nowhere else:

- before the commit, in the same transaction: each build whose status changed in it gets the
  commit status GitHub should now show, and the job that sends it (`app.statuses.service`);
- after the commit: the jobs written to the outbox in it (`app.outbox.service.enqueue`) are
  handed to this process's relay thread, which publishes them to the broker at once;
- after a rollback: both are forgotten; nothing of the transaction is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings
from app.engine import dispose_engine, get_engine
from app.outbox import service as outbox
from app.outbox.relay import get_relay
from app.statuses import service as statuses


def _before_commit(session: Session) -> None:
    statuses.record_owed_statuses(session)


def _after_commit(session: Session) -> None:
    messages = outbox.take_committed(session)
    if messages:
        get_relay().notify(messages)


def _after_rollback(session: Session) -> None:
    statuses.forget_owed_statuses(session)
    outbox.forget_uncommitted(session)


@lru_cache
def get_session_factory() -> sessionmaker[Session]:
    factory = sessionmaker(bind=get_engine(), expire_on_commit=False)
    event.listen(factory, "before_commit", _before_commit)
    event.listen(factory, "after_commit", _after_commit)
    event.listen(factory, "after_rollback", _after_rollback)
    return factory


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work for workers and the CLI: commit on success, roll back on error."""
    session = get_session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_caches() -> None:
    """Forget the engine, the session factory and the settings (tests and the CLI change the
    environment)."""
    dispose_engine()
    get_session_factory.cache_clear()
    get_settings.cache_clear()
