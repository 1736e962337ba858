"""Process logs: JSON lines with the work's context, secrets redacted, request ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.logs import REDACTED, configure_logging, log_context

SECRET = "whsec-super-secret-value"
PEM = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END KEY-----"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    settings = Settings(
        log_format="json", webhook_secret=SECRET, github_app_private_key=PEM, _env_file=None
    )
    configure_logging(settings)
    yield stream
    configure_logging(Settings(_env_file=None))


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_json_lines_carry_the_context_of_the_work(captured: io.StringIO) -> None:
    log = logging.getLogger("cartridge.test")
    with log_context(build_id=42, repository="octo/app", sha="a" * 40, attempt=2):
        log.info("compiling %s", "now")
        with log_context(delivery="d-1"):
            log.warning("nested")
    log.info("outside")
    first, nested, outside = lines(captured)[-3:]
    assert first["message"] == "compiling now"
    assert (first["build_id"], first["repository"], first["attempt"]) == (42, "octo/app", 2)
    assert first["level"] == "info"
    assert first["logger"] == "cartridge.test"
    assert nested["delivery"] == "d-1"
    assert nested["build_id"] == 42
    assert "build_id" not in outside


def test_secrets_never_reach_a_line(captured: io.StringIO) -> None:
    log = logging.getLogger("cartridge.test")
    log.info("signature made with %s", SECRET)
    log.info("key line %s", PEM.splitlines()[1])
    try:
        raise RuntimeError(f"refused {SECRET}")
    except RuntimeError:
        log.exception("failed")
    text = captured.getvalue()
    assert SECRET not in text
    assert PEM.splitlines()[1] not in text
    assert text.count(REDACTED) >= 3
    assert all(isinstance(line, dict) for line in lines(captured))


def test_each_request_has_an_id_in_its_logs_and_its_answer(
    client: TestClient, captured: io.StringIO
) -> None:
    answer = client.get("/healthz", headers={"X-Request-ID": "req-123"})
    assert answer.headers["x-request-id"] == "req-123"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    hostile = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert len(hostile.headers["x-request-id"]) == 32
