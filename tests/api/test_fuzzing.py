"""The API fuzzed from its own OpenAPI document with schemathesis: every phase (examples,
coverage, fuzzing, stateful) and every check except the two that judge how precisely the schema
describes accepted input (`positive_data_acceptance`, `negative_data_rejection`). No answer may be a
server error, carry an undocumented status, break its documented schema or content type, or
advertise a wrong `Allow`.

It runs against a real uvicorn and the test database, with a write token and a little data to find
(a repository, a finished build with its log and image, a replica). `CARTRIDGE_FUZZ_SEED` and
`CARTRIDGE_FUZZ_EXAMPLES` change the seed and the number of cases per operation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.models import BuildLogChunk, Registry
from tests.support.server import serve

pytestmark = pytest.mark.e2e

SEED = os.environ.get("CARTRIDGE_FUZZ_SEED", "20261201")
EXAMPLES = os.environ.get("CARTRIDGE_FUZZ_EXAMPLES", "30")


@pytest.fixture
def some_data(session: Session, make_repository, make_build, make_image) -> None:  # type: ignore[no-untyped-def]
    repository = make_repository("octo/app")
    build = make_build(repository, status="succeeded")
    session.add(BuildLogChunk(build_id=build.id, attempt=1, offset=0, content="==> done\n"))
    session.add(Registry(name="r1", url="127.0.0.1:5999", healthy=True))
    session.commit()
    make_image(build)


def test_the_api_survives_schemathesis_with_no_server_error_or_undocumented_answer(
    app, write_token: str, some_data: None, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with serve(app) as url:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{url}/openapi.json",
                "--phases=examples,coverage,fuzzing,stateful",
                "--checks=all",
                "--exclude-checks=positive_data_acceptance,negative_data_rejection",
                f"--max-examples={EXAMPLES}",
                f"--seed={SEED}",
                "--workers=1",
                "--request-timeout=10",
                f"--header=Authorization: Bearer {write_token}",
                f"--report-dir={tmp_path}",
                "--report=junit",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # no schemathesis.toml of ours: the options above are the whole config
            check=False,
        )
    summary = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, summary
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert tested is not None, summary
    assert int(tested.group(1)) == operations, summary
    assert re.search(r"\d+ generated, \d+ passed", run.stdout), summary
