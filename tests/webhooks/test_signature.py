"""Who may deliver: signatures, secrets and content types."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from app.webhooks.signature import signature_matches
from tests.conftest import WEBHOOK_SECRET
from tests.support.github import encode, form_body, push_payload, sign, webhook_headers
from tests.webhooks.conftest import Deliver

NOTHING = {"webhook_deliveries": 0, "pushes": 0, "builds": 0, "outbox": 0}


def test_signature_check_agrees_with_githubs_test_vector() -> None:
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    vector = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_matches(body, vector, secret)
    assert not signature_matches(body + b" ", vector, secret)
    assert not signature_matches(body, vector.upper(), secret)
    assert not signature_matches(body, "sha256=ünïcode", secret)
    assert not signature_matches(body, vector, "")


def test_a_delivery_without_signature_is_refused_and_not_recorded(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    response = deliver("push", push_payload("octo/app"), secret=None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "signature_missing"
    assert counts() == NOTHING


@pytest.mark.parametrize("secret", ["not-the-secret", WEBHOOK_SECRET + "x"])
def test_a_wrong_signature_is_refused_and_not_recorded(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]], secret: str
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", webhook_secret="octo-app-own-secret")
    response = deliver("push", push_payload("octo/app"), secret=secret)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "signature_invalid"
    assert counts() == NOTHING


def test_a_signature_of_another_body_is_refused(
    client: TestClient, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    signed = encode(push_payload("octo/app"))
    sent = encode(push_payload("octo/app"))
    headers = webhook_headers("push", signed, WEBHOOK_SECRET)
    response = client.post("/webhooks/github", content=sent, headers=headers)
    assert response.status_code == 401
    assert counts() == NOTHING


def test_only_the_legacy_sha1_signature_is_not_enough(
    client: TestClient, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    body = encode(push_payload("octo/app"))
    headers = webhook_headers("push", body, None)
    headers["X-Hub-Signature"] = "sha1=" + "0" * 40
    response = client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 401
    assert counts() == NOTHING


def test_a_repository_secret_authenticates_that_repository_only(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", webhook_secret="octo-app-own-secret")
    make_repository("octo/other", webhook_secret="octo-other-own-secret")

    own = deliver("push", push_payload("octo/app"), secret="octo-app-own-secret")
    assert own.status_code == 200
    assert own.json()["outcome"] == "accepted"

    # Another repository's secret does not sign for this one.
    borrowed = deliver("push", push_payload("octo/app"), secret="octo-other-own-secret")
    assert borrowed.status_code == 401
    # A repository with its own secret accepts only that one, not the global secret...
    global_signed = deliver("push", push_payload("octo/other"))
    assert global_signed.status_code == 401
    assert global_signed.json()["error"]["code"] == "signature_invalid"
    # ...which still signs for repositories without one, and for unknown repositories.
    make_repository("octo/plain")
    assert deliver("push", push_payload("octo/plain")).json()["outcome"] == "accepted"
    unknown = deliver("push", push_payload("octo/unknown"))
    assert unknown.json()["outcome"] == "unknown_repository"
    assert counts()["builds"] == 2


def test_a_repository_secret_is_matched_against_the_payload_case_insensitively(
    deliver: Deliver, make_repository
) -> None:  # type: ignore[no-untyped-def]
    make_repository("Octo/App", webhook_secret="octo-app-own-secret")
    response = deliver("push", push_payload("octo/app"), secret="octo-app-own-secret")
    assert response.status_code == 200
    assert response.json()["build_id"] is not None


def test_an_unauthenticated_malformed_body_gets_401_not_details(
    deliver: Deliver, counts: Callable[[], dict[str, int]]
) -> None:
    for body in (b"{not json", b'{"repository": "octo/app"}', b"[]", "ünï".encode()):
        response = deliver("push", body, secret="wrong-secret")
        assert response.status_code == 401, body
        assert response.json()["error"]["code"] == "signature_invalid"
    assert counts() == NOTHING


def test_an_authenticated_malformed_body_gets_400(
    deliver: Deliver, counts: Callable[[], dict[str, int]]
) -> None:
    for event in ("push", "ping", "create"):
        response = deliver(event, b"{not json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "malformed_json"
    assert deliver("ping", b"[1, 2]").json()["error"]["code"] == "malformed_json"
    assert counts() == NOTHING


def test_form_deliveries_are_signed_over_the_raw_form_body(
    client: TestClient, make_repository, counts: Callable[[], dict[str, int]]
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    payload = encode(push_payload("octo/app", after="f" * 40))
    body = form_body(payload)
    form = "application/x-www-form-urlencoded"

    signed_over_json = webhook_headers("push", payload, WEBHOOK_SECRET, content_type=form)
    refused = client.post("/webhooks/github", content=body, headers=signed_over_json)
    assert refused.status_code == 401
    assert counts() == NOTHING

    headers = webhook_headers("push", body, WEBHOOK_SECRET, content_type=form)
    accepted = client.post("/webhooks/github", content=body, headers=headers)
    assert accepted.status_code == 200
    assert accepted.json()["outcome"] == "accepted"
    assert counts()["builds"] == 1


def test_a_form_delivery_signed_by_a_repository_secret_is_accepted(
    deliver: Deliver, make_repository
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", webhook_secret="octo-app-own-secret")
    body = form_body(encode(push_payload("octo/app")))
    response = deliver(
        "push",
        body,
        secret="octo-app-own-secret",
        content_type="application/x-www-form-urlencoded; charset=utf-8",
    )
    assert response.status_code == 200
    assert response.json()["outcome"] == "accepted"


def test_a_form_without_payload_field_is_400_once_authenticated(
    deliver: Deliver, counts: Callable[[], dict[str, int]]
) -> None:
    form = "application/x-www-form-urlencoded"
    response = deliver("push", b"other=1", content_type=form)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_payload_field"
    assert deliver("push", b"other=1", content_type=form, secret="wrong").status_code == 401
    assert counts() == NOTHING


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
def test_other_content_types_are_415(
    deliver: Deliver, make_repository, counts: Callable[[], dict[str, int]], content_type: str
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app")
    response = deliver("push", push_payload("octo/app"), content_type=content_type)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert counts() == NOTHING


def test_a_delivery_without_content_type_is_415(client: TestClient) -> None:
    body = encode(push_payload("octo/app"))
    headers = webhook_headers("push", body, WEBHOOK_SECRET)
    del headers["Content-Type"]
    response = client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 415


def test_signatures_and_secrets_stay_out_of_logs_and_answers(
    deliver: Deliver, make_repository, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    make_repository("octo/app", webhook_secret="octo-app-own-secret")
    caplog.set_level(logging.DEBUG)
    good = encode(push_payload("octo/app"))
    bad = encode(push_payload("octo/app"))
    answers = [
        deliver("push", good, secret="octo-app-own-secret").text,
        deliver("push", bad, secret="wrong-secret").text,
        deliver("push", b"{broken", secret="octo-app-own-secret").text,
    ]
    logged = caplog.text + "".join(answers)
    assert "webhook delivery" in caplog.text  # the receiver does log its deliveries
    for secret in ("octo-app-own-secret", WEBHOOK_SECRET, "wrong-secret"):
        assert secret not in logged
    for signature in (
        sign(good, "octo-app-own-secret"),
        sign(bad, "wrong-secret"),
        sign(b"{broken", "octo-app-own-secret"),
    ):
        assert signature.removeprefix("sha256=") not in logged
