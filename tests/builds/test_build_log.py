"""The live build log: committed in batches while the build runs, secrets masked."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.builds import logs
from tests.builds.helpers import wait_for
from workers.pipeline.buildlog import REDACTED, BuildLog


def test_lines_are_readable_before_the_build_ends_and_secrets_are_masked(
    session: Session,
    make_repository,
    make_build,  # type: ignore[no-untyped-def]
) -> None:
    build = make_build(make_repository(), "c" * 40)
    log = BuildLog(build.id, 1, flush_seconds=0.1, flush_bytes=1 << 20, secrets=["s3cr3t-token"])
    try:
        log.line("step one with s3cr3t-token inside")
        with log.step("fetch", "https://github.com/octo/app.git"):
            log.write("remote: counting objects\n")

        # Without close(): this is what survives if the worker dies now.
        wait_for("the batch", lambda: logs.read(session, build.id, 1).content.count("\n") == 4)
        text = logs.read(session, build.id, 1).content
        assert text.splitlines()[:3] == [
            f"step one with {REDACTED} inside",
            "==> fetch: https://github.com/octo/app.git",
            "remote: counting objects",
        ]
        assert text.splitlines()[3].startswith("==> fetch ")
        assert text.splitlines()[3].endswith("s")
        assert "s3cr3t-token" not in text
        assert log.redact("token s3cr3t-token") == f"token {REDACTED}"
    finally:
        log.close()


def test_a_full_buffer_is_written_without_waiting_for_the_interval(
    session: Session,
    make_repository,
    make_build,  # type: ignore[no-untyped-def]
) -> None:
    build = make_build(make_repository(), "c" * 40)
    log = BuildLog(build.id, 1, flush_seconds=3600, flush_bytes=10)
    try:
        log.write("more than ten bytes\n")
        wait_for("the batch", lambda: logs.read(session, build.id, 1).content, timeout=10)
    finally:
        log.close()
    assert logs.read(session, build.id, 1).content == "more than ten bytes\n"
