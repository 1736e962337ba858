"""A real worker logging in JSON while it builds: every log line an object, the build's lines
carrying its id, SHA and attempt, and none of the configured secrets anywhere in its output."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.broker import BUILD_TASK
from app.config import get_settings
from app.models import Build, Repository
from app.outbox.service import enqueue
from tests.builds.conftest import GIT_TOKEN
from tests.builds.helpers import reload, sample_files, wait_for
from tests.conftest import WEBHOOK_SECRET
from tests.support.worker import run_worker

pytestmark = pytest.mark.e2e


def test_a_build_logs_json_lines_with_its_context_and_no_secret(
    session: Session,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    build_env: dict[str, str],
    set_build_env: Callable[..., None],
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    set_build_env(build_queue=f"builds-{run}", default_queue=f"cartridge-{run}", log_format="json")
    # The compile prints the token it must never see; the build log redacts it, and so do logs.
    compile_script = f"#!/bin/sh\necho 'token is {GIT_TOKEN}'\necho done\n"
    sha = push_commit(sample_repository, sample_files({"container/compile": compile_script}))
    settings = get_settings()
    with run_worker(
        build_env, tmp_path, queues=f"{settings.build_queue},{settings.default_queue}", beat=True
    ) as worker:
        build = Build(repository_id=sample_repository.id, sha=sha)
        session.add(build)
        session.flush()
        enqueue(session, BUILD_TASK, [build.id], queue=settings.build_queue)
        session.commit()
        wait_for(
            "the build to end",
            lambda: reload(session, build).status in {"succeeded", "failed", "errored"},
            timeout=120,
        )
        wait_for("the worker's last line", lambda: "build ended" in worker.output(), timeout=30)
        output = worker.output()

    assert GIT_TOKEN not in output
    assert WEBHOOK_SECRET not in output
    objects = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert objects, output[-3000:]
    ours = [line for line in objects if line.get("build_id") == build.id]
    messages = [line["message"] for line in ours]
    assert any(message.startswith("build started on") for message in messages), messages
    assert any(message.startswith("build ended") for message in messages), messages
    for line in ours:
        assert line["sha"] == sha
        assert line["attempt"] == 1
        assert line["repository"] == sample_repository.full_name
