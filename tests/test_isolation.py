"""Each test process (a pytest-xdist worker, or pytest alone) has a database, queues and a state
directory of its own, named after the run and the worker, so workers and concurrent runs never see
each other's rows, jobs or files."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url

from app.config import get_settings
from tests.conftest import RUN_ID, TEST_DATABASE


def test_this_process_has_a_database_queues_and_state_of_its_own(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        assert RUN_ID.endswith(f"_{worker}")
    assert make_url(database_url).database == TEST_DATABASE == f"cartridge_test_{RUN_ID}"
    settings = get_settings()
    assert (settings.build_queue, settings.default_queue) == (
        f"builds-{RUN_ID}",
        f"cartridge-{RUN_ID}",
    )
    # pytest-xdist gives every worker a temporary directory of its own (…/popen-gw0).
    assert settings.state_dir.is_relative_to(tmp_path_factory.getbasetemp())
