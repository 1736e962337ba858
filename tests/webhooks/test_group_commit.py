"""Deliveries that arrive together are committed together, and fail alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.errors import BadRequest, Unauthorized
from app.models import Build, WebhookDelivery
from app.webhooks.intake import record_batch
from app.webhooks.schemas import DeliveryOutcome, DeliveryResult
from app.webhooks.service import IncomingDelivery
from tests.conftest import WEBHOOK_SECRET
from tests.support.github import encode, push_payload, sign

SHA_A, SHA_B, SHA_C = "a1" * 20, "b2" * 20, "c3" * 20


def _push(guid: str, sha: str, *, secret: str = WEBHOOK_SECRET) -> IncomingDelivery:
    body = encode(push_payload("octo/app", ref="refs/heads/feature/x", after=sha))
    return IncomingDelivery(
        body=body,
        media_type="application/json",
        event="push",
        guid=guid,
        signature=sign(body, secret),
    )


def _result(outcome: object) -> DeliveryResult:
    assert isinstance(outcome, DeliveryResult), outcome
    return outcome


def test_a_batch_keeps_the_order_and_refuses_only_the_bad_delivery(
    make_repository: Callable[..., object], session: Session
) -> None:
    make_repository("octo/app")
    malformed = IncomingDelivery(
        body=b"{not json",
        media_type="application/json",
        event="push",
        guid="malformed",
        signature=sign(b"{not json", WEBHOOK_SECRET),
    )
    outcomes = record_batch(
        [
            _push("first", SHA_A),
            _push("forged", SHA_C, secret="not-the-secret"),
            malformed,
            _push("second", SHA_B),
            _push("first", SHA_A),  # a redelivery inside the same batch
        ]
    )

    first, forged, bad, second, again = outcomes
    assert _result(first).outcome is DeliveryOutcome.ACCEPTED
    assert isinstance(forged, Unauthorized)
    assert isinstance(bad, BadRequest)
    assert _result(second).superseded_build_ids == [_result(first).build_id]
    assert _result(again).outcome is DeliveryOutcome.DUPLICATE
    recorded = session.scalars(select(WebhookDelivery.guid).order_by(WebhookDelivery.id))
    assert list(recorded) == ["first", "second"]
    cancelled = session.get(Build, _result(first).build_id)
    assert cancelled is not None
    assert cancelled.status == "cancelled"


@pytest.fixture
def poisoned_delivery_id(session: Session) -> Iterator[str]:
    """A real database error for one delivery id: a trigger refuses its row."""
    session.execute(
        text(
            """
            CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
            BEGIN
              IF NEW.guid = 'poison' THEN
                RAISE EXCEPTION 'refused by the test trigger';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_poison BEFORE INSERT ON webhook_deliveries
              FOR EACH ROW EXECUTE FUNCTION refuse_poison();
            """
        )
    )
    session.commit()
    try:
        yield "poison"
    finally:
        session.rollback()
        session.execute(text("DROP TRIGGER refuse_poison ON webhook_deliveries"))
        session.execute(text("DROP FUNCTION refuse_poison()"))
        session.commit()


def test_an_unexpected_error_fails_that_delivery_alone(
    make_repository: Callable[..., object], session: Session, poisoned_delivery_id: str
) -> None:
    make_repository("octo/app")
    outcomes = record_batch(
        [_push("before", SHA_A), _push(poisoned_delivery_id, SHA_B), _push("after", SHA_C)]
    )

    before, poisoned, after = outcomes
    assert isinstance(poisoned, DBAPIError)
    assert _result(before).outcome is DeliveryOutcome.ACCEPTED
    assert _result(after).outcome is DeliveryOutcome.ACCEPTED
    session.expire_all()
    recorded = session.scalars(select(WebhookDelivery.guid).order_by(WebhookDelivery.id))
    assert list(recorded) == ["before", "after"]
    assert session.scalars(select(Build.sha).order_by(Build.id)).all() == [SHA_A, SHA_C]
