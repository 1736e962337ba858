"""No transaction stays open while replicas are contacted: with PostgreSQL ending any
transaction left idle for a second, copies, repairs and health checks that each take several
seconds still record their results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db import get_session_factory, reset_caches
from app.engine import get_engine
from app.models import Image, ImageReplica, Registry, ReplicaState
from app.registries.replication import repair_image, replicate_image
from tests.support.registry_cluster import PushedImage, RegistryCluster, push_image
from tests.support.slow_proxy import slow_proxy

pytestmark = pytest.mark.e2e

IDLE_TIMEOUT = "1s"
LINK_DELAY = 0.7  # per chunk of every answer: each copy below takes several seconds


@pytest.fixture
def strict_database(database_url: str) -> Iterator[None]:
    """Every connection Cartridge opens during the test ends transactions idle for a second."""
    reset_caches()

    def limit(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_TIMEOUT}'")
        cursor.close()
        dbapi_connection.commit()

    event.listen(get_engine(), "connect", limit)
    yield
    reset_caches()  # no connection with the limit outlives the test


def _presence(session: Session, image: Image) -> dict[int, str]:
    session.expire_all()
    rows = session.scalars(select(ImageReplica).where(ImageReplica.image_id == image.id))
    return {row.registry_id: row.state for row in rows}


def test_the_limit_is_in_force(strict_database: None) -> None:
    # Without it the tests below would pass whatever the code did.
    with get_session_factory()() as session:
        session.execute(text("SELECT 1"))
        time.sleep(1.5)
        with pytest.raises(DBAPIError, match="idle-in-transaction"):
            session.execute(text("SELECT 1"))


def test_a_slow_replication_and_its_repair_record_their_results(
    session: Session,
    cluster: RegistryCluster,
    configure: Callable[..., None],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
    strict_database: None,
) -> None:
    configure(registry_url=cluster[0].host)
    image = record_image(push_image(cluster[0].host, repository_path))
    with slow_proxy(cluster[1].host, delay=LINK_DELAY) as far_away:
        rows = [
            Registry(name="near", url=cluster[0].host, required=True),
            Registry(name="far", url=far_away, required=True),
            Registry(name="down", url=cluster[2].host, required=False),
        ]
        session.add_all(rows)
        session.commit()
        cluster[2].stop()

        started = time.monotonic()
        result = replicate_image(image.id)
        took = time.monotonic() - started

        assert took > 2  # far longer than the idle limit
        assert result.quorum_met, result.describe()
        assert sorted(result.verified_on) == ["far", "near"]
        near, far, down = rows
        assert _presence(session, image) == {
            near.id: ReplicaState.PRESENT,
            far.id: ReplicaState.PRESENT,
            down.id: ReplicaState.MISSING,
        }

        # The replica that was down is repaired from the slow one only.
        cluster[2].start()
        session.execute(
            ImageReplica.__table__.delete().where(ImageReplica.registry_id == near.id)  # type: ignore[attr-defined]
        )
        session.commit()
        started = time.monotonic()
        outcome = repair_image(image_id=image.id, registry_id=down.id)
        assert time.monotonic() - started > 2
        assert outcome.present, outcome.error
        assert _presence(session, image)[down.id] == ReplicaState.PRESENT


def test_a_slow_health_check_records_every_replica(
    session: Session,
    cluster: RegistryCluster,
    configure: Callable[..., None],
    strict_database: None,
) -> None:
    import workers.replication as tasks

    assert isinstance(tasks, ModuleType)
    configure(registry_url=cluster[0].host)
    with slow_proxy(cluster[1].host, delay=1.5) as far_away:
        session.add_all(
            [
                Registry(name="near", url=cluster[0].host, healthy=False),
                Registry(name="far", url=far_away, healthy=False),
            ]
        )
        session.commit()
        started = time.monotonic()
        errors = tasks.check_replicas()
        assert time.monotonic() - started > 1.5
    assert errors == {"near": None, "far": None}
    session.expire_all()
    assert all(r.healthy and r.last_checked_at for r in session.scalars(select(Registry)))
