"""The CLI against a real API server on a loopback port, with an admin token."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result
from fastapi import FastAPI

from app.cli.main import cli
from tests.support.server import serve

Run = Callable[..., Result]


@pytest.fixture
def api_url(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.fixture
def run(api_url: str, admin_token: str) -> Run:
    """`cartridge ARGS...` pointed at the server; `token=None` sends none."""

    def invoke(*args: str, token: str | None = admin_token) -> Result:
        env = {"CARTRIDGE_API_URL": api_url, "CARTRIDGE_TOKEN": token}
        return CliRunner().invoke(cli, list(args), env=env)

    return invoke
