"""Bodies built to hurt the receiver: absurdly nested JSON, signed bodies that are not JSON, a
repository's secret signing for another repository. Each gets a clear 4xx and records nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import BadRequest, Unauthorized
from app.models import WebhookDelivery
from app.webhooks.intake import record_batch
from app.webhooks.payloads import MAX_JSON_DEPTH, check_depth, named_repositories
from app.webhooks.schemas import DeliveryOutcome, DeliveryResult
from app.webhooks.service import IncomingDelivery
from tests.conftest import WEBHOOK_SECRET
from tests.support.github import encode, form_body, push_payload, sign
from tests.webhooks.conftest import Deliver

NOTHING = {"webhook_deliveries": 0, "pushes": 0, "builds": 0, "outbox": 0}
REPO_SECRET = "octo-app-own-secret"
DEEP = b"[" * 100_000 + b"]" * 100_000


def _nested(depth: int) -> bytes:
    """A ping-like document whose `zen` field nests `depth - 1` arrays (depth counts the root)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return ('{"repository": {"full_name": "octo/app"}, "zen": ' + inner + "}").encode()


@pytest.mark.parametrize("secret", [WEBHOOK_SECRET, None, "wrong-secret"])
def test_a_hundred_thousand_levels_deep_body_is_refused_without_a_500(
    deliver: Deliver, counts: Callable[[], dict[str, int]], secret: str | None
) -> None:
    for event in ("push", "ping"):
        response = deliver(event, DEEP, secret=secret)
        if secret == WEBHOOK_SECRET:
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "json_too_deep"
        else:  # unauthenticated: it learns nothing but 401
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] in ("signature_missing", "signature_invalid")
    assert counts() == NOTHING


def test_a_deep_body_signed_by_a_repository_secret_is_400(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", webhook_secret=REPO_SECRET)
    body = _nested(100_000)
    response = deliver("ping", body, secret=REPO_SECRET)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "json_too_deep",
        "message": f"The payload nests arrays or objects more than {MAX_JSON_DEPTH} levels deep.",
        "details": {"max_depth": MAX_JSON_DEPTH},
    }
    form = "application/x-www-form-urlencoded"
    response = deliver("ping", form_body(body), secret=REPO_SECRET, content_type=form)
    assert response.json()["error"]["code"] == "json_too_deep"
    assert counts() == NOTHING


def test_the_depth_limit_is_exact_and_ignores_brackets_inside_strings(
    deliver: Deliver, counts: Callable[[], dict[str, int]]
) -> None:
    assert deliver("ping", _nested(MAX_JSON_DEPTH)).status_code == 200
    assert deliver("ping", _nested(MAX_JSON_DEPTH + 1)).json()["error"]["code"] == "json_too_deep"
    message = "[" * 10_000 + '\\"{' * 10_000
    payload = push_payload("octo/app")
    payload["head_commit"]["message"] = message
    body = encode(payload)
    check_depth(body)  # brackets in a string, escaped quotes included, are text
    with pytest.raises(BadRequest):
        check_depth(b'{"a": "\\\\", "b": ' + b"[" * (MAX_JSON_DEPTH + 1))
    assert counts()["webhook_deliveries"] == 1


def test_a_deep_body_in_a_busy_batch_fails_alone_and_keeps_the_batch_together(
    make_repository, session: Session, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")

    def incoming(guid: str, body: bytes, secret: str, event: str = "push") -> IncomingDelivery:
        return IncomingDelivery(
            body=body,
            media_type="application/json",
            event=event,
            guid=guid,
            signature=sign(body, secret),
        )

    good = encode(push_payload("octo/app", ref="refs/heads/feature/x", after="a1" * 20))
    other = encode(push_payload("octo/app", ref="refs/heads/feature/y", after="b2" * 20))
    with caplog.at_level(logging.WARNING, logger="app.webhooks.intake"):
        outcomes = record_batch(
            [
                incoming("first", good, WEBHOOK_SECRET),
                incoming("deep-signed", DEEP, WEBHOOK_SECRET),
                incoming("deep-forged", DEEP, "wrong-secret"),
                incoming("deep-ping", _nested(100_000), WEBHOOK_SECRET, event="ping"),
                incoming("second", other, WEBHOOK_SECRET),
            ]
        )
    first, deep_signed, deep_forged, deep_ping, second = outcomes
    assert isinstance(first, DeliveryResult)
    assert first.outcome is DeliveryOutcome.ACCEPTED
    assert isinstance(deep_signed, BadRequest)
    assert isinstance(deep_ping, BadRequest)
    assert isinstance(deep_forged, Unauthorized)
    assert isinstance(second, DeliveryResult)
    assert second.outcome is DeliveryOutcome.ACCEPTED
    assert "one by one" not in caplog.text  # one transaction for the whole batch
    guids = session.scalars(select(WebhookDelivery.guid).order_by(WebhookDelivery.id)).all()
    assert guids == ["first", "second"]


@pytest.mark.parametrize("body", [b'{"repository": {"full_name": "octo/app"}, "ref": ', b"\xff"])
def test_a_signed_body_that_is_not_json_is_400_not_a_signature_error(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]], body: bytes
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", webhook_secret=REPO_SECRET)
    response = deliver("push", body, secret=WEBHOOK_SECRET)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "malformed_json")
    if b"octo/app" in body:  # the repository's own secret is found without parsing the body
        response = deliver("push", body, secret=REPO_SECRET)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "malformed_json")
    assert counts() == NOTHING


def test_a_repository_secret_does_not_sign_for_a_repository_the_payload_only_mentions(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", webhook_secret=REPO_SECRET)
    make_repository("octo/other")
    payload = push_payload("octo/other")
    # octo/app's name appears first, as a pull request's head repository would.
    payload = {"pull_request": {"head": {"repo": {"full_name": "octo/app"}}}, **payload}
    response = deliver("push", payload, secret=REPO_SECRET)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "signature_invalid"
    assert response.headers["WWW-Authenticate"].startswith("X-Hub-Signature-256 ")
    # The same shape about the repository whose secret signed it is accepted.
    payload = {"pull_request": {"head": {"repo": {"full_name": "octo/other"}}}}
    payload.update(push_payload("octo/app"))
    assert deliver("push", payload, secret=REPO_SECRET).json()["outcome"] == "accepted"
    assert counts()["webhook_deliveries"] == 1


def test_repository_names_are_read_from_the_raw_bytes() -> None:
    body = json.dumps(
        {
            "pull_request": {"head": {"repo": {"full_name": "a/head"}}},
            "note": 'a "full_name": "x/y" inside a string is text',
            "repository": {"full_name": "A/Head"},
            "sender": {"full_name": "o/\u00e9"},
        }
    ).encode()
    assert named_repositories(body) == ["a/head", "o/\u00e9"]
    assert named_repositories(b'{"full_name": "a/' + b"x" * 10 + b"") == []
    many = b",".join(b'{"full_name": "o/r%d"}' % i for i in range(50))
    assert len(named_repositories(b"[" + many + b"]")) == 8


def test_a_nul_character_in_a_signed_payload_is_400_and_records_nothing(
    deliver: Deliver, counts: Callable[[], dict[str, int]]
) -> None:
    payload = push_payload("octo/app", pusher="octo\u0000cat")
    response = deliver("push", payload)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "nul_character")
    # An escaped backslash followed by the text "u0000" is no NUL.
    payload = push_payload("octo/app", pusher="octo\\u0000cat")
    assert deliver("push", payload).status_code == 200
    assert counts()["webhook_deliveries"] == 1
