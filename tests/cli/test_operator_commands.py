"""The operator commands that work on the database directly (`db upgrade`, `proxy-config`), and
the one way every command prints a failure."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from app.cli.errors import EXIT_REFUSED, EXIT_UNREACHABLE, CommandError, from_response
from app.cli.main import cli
from app.config import get_settings
from app.db import reset_caches
from tests.support.server import free_port


@pytest.fixture
def settings_env(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.MonkeyPatch]:
    """Change CARTRIDGE_* settings for one test; the test database is restored afterwards."""
    yield monkeypatch
    monkeypatch.undo()
    reset_caches()


def _set(env: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        env.setenv(f"CARTRIDGE_{key.upper()}", value)
    reset_caches()
    get_settings.cache_clear()


def test_db_upgrade_migrates_the_configured_database(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["db", "upgrade"])

    assert result.exit_code == 0, result.output
    assert result.stdout == "database at head\n"


def test_an_unreachable_database_is_exit_3(settings_env: pytest.MonkeyPatch) -> None:
    _set(settings_env, database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")

    for command in (["db", "upgrade"], ["proxy-config"], ["token", "create", "ops"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == EXIT_UNREACHABLE, (command, result.output)
        assert result.stderr.startswith("error: cannot reach the database: "), result.stderr
        assert "Traceback" not in result.output


def test_a_refusal_in_this_process_is_printed_like_the_apis(
    settings_env: pytest.MonkeyPatch,
) -> None:
    _set(settings_env, proxy_host="127.0.0.1:99999")

    result = CliRunner().invoke(cli, ["proxy-config"])

    assert result.exit_code == EXIT_REFUSED
    assert result.stdout == ""
    first, *details = result.stderr.splitlines()
    assert first == "error: nginx refuses the generated proxy config. (proxy_config_invalid)"
    # The details, indented: nginx's own message, line by line.
    assert details[0] == "  nginx_output:"
    assert any("99999" in line for line in details[1:])
    assert all(line.startswith("    ") for line in details[1:])


def _answer(status: int, **body: object) -> httpx.Response:
    request = httpx.Request("GET", "http://cartridge.example.com/api/v1/x")
    return (
        httpx.Response(status, json=body, request=request)
        if body
        else httpx.Response(status, text="<html>Bad Gateway</html>", request=request)
    )


def test_the_error_envelope_is_rendered_with_its_code_status_and_details() -> None:
    error = from_response(
        _answer(
            422,
            error={
                "code": "validation_error",
                "message": "The request is not valid.",
                "details": {
                    "errors": [{"loc": ["body", "full_name"], "msg": "must be owner/name"}]
                },
            },
        )
    )
    assert isinstance(error, CommandError)
    assert error.exit_code == EXIT_REFUSED
    assert error.format_message().splitlines() == [
        "The request is not valid. (validation_error, HTTP 422)",
        "  body.full_name: must be owner/name",
    ]

    incident = from_response(
        _answer(
            500,
            error={
                "code": "internal_error",
                "message": "Cartridge failed.",
                "details": {"incident": "ab12"},
            },
        )
    )
    assert incident.format_message().splitlines()[1] == "  incident: ab12"


def test_an_answer_without_the_envelope_is_shown_as_it_came() -> None:
    # A proxy in front of the API answers in its own words.
    error = from_response(_answer(502))

    assert error.exit_code == EXIT_REFUSED
    assert error.format_message() == "<html>Bad Gateway</html> (HTTP 502)"
