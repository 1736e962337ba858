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


def _numbered(count: int) -> list[str]:
    return [f"output line {number:06d}\n" for number in range(count)]


def test_a_capped_log_keeps_the_head_then_one_line_about_the_drop_then_the_tail(
    session: Session,
    make_repository,
    make_build,  # type: ignore[no-untyped-def]
) -> None:
    build = make_build(make_repository(), "c" * 40)
    lines = _numbered(20_000)  # 420 KB of output against a 40 KB cap
    log = BuildLog(
        build.id, 1, flush_seconds=0.05, flush_bytes=4096, max_bytes=40_000, tail_bytes=10_000
    )
    try:
        for line in lines:
            log.write(line)  # the build runs on: nothing refuses its output
        assert log.capped
        # Live readers see the head while the build runs; no tail yet.
        wait_for("the head", lambda: logs.log_length(session, build.id, 1) > 25_000)
        live = logs.read(session, build.id, 1).content
        assert live.startswith(lines[0])
        assert "log cap reached" not in live
        log.line("==> failed: container/compile exited with status 1")
        log.flush(final=True)
    finally:
        log.close()

    text = logs.read(session, build.id, 1).content
    stored = text.splitlines(keepends=True)
    markers = [line for line in stored if "log cap reached" in line]
    assert len(markers) == 1
    at = stored.index(markers[0])
    head, tail = stored[:at], stored[at + 1 :]
    assert head == lines[: len(head)]  # whole lines, in order, from the first
    assert tail[-1] == "==> failed: container/compile exited with status 1\n"
    assert tail[:-1] == lines[-(len(tail) - 1) :]  # the last lines of the output, whole
    assert 25_000 < sum(map(len, head)) <= 30_000
    assert 9_000 < sum(map(len, tail)) <= 10_000
    kept = len(head) + len(tail) - 1
    dropped = sum(map(len, lines)) + len(tail[-1]) - sum(map(len, head)) - sum(map(len, tail))
    assert f"({dropped} bytes;" in markers[0]
    assert "CARTRIDGE_BUILD_LOG_MAX_BYTES" in markers[0]
    assert kept < len(lines)
    assert len(text.encode()) <= 40_000 + len(markers[0])


def test_a_log_under_its_cap_is_stored_whole(
    session: Session,
    make_repository,
    make_build,  # type: ignore[no-untyped-def]
) -> None:
    build = make_build(make_repository(), "c" * 40)
    lines = _numbered(1_000)
    log = BuildLog(build.id, 1, flush_seconds=0.05, flush_bytes=4096, max_bytes=40_000)
    for line in lines:
        log.write(line)
    log.close()
    assert not log.capped
    assert logs.read(session, build.id, 1).content == "".join(lines)


def test_a_single_write_past_the_cap_with_no_newline_goes_to_the_tail(
    session: Session,
    make_repository,
    make_build,  # type: ignore[no-untyped-def]
) -> None:
    build = make_build(make_repository(), "c" * 40)
    log = BuildLog(build.id, 1, flush_seconds=3600, flush_bytes=1 << 20, max_bytes=1000)
    log.write("é" * 3000)  # 6,000 bytes, one line without an end
    log.close()
    text = logs.read(session, build.id, 1).content
    marker, _, tail = text.partition("\n")
    assert marker.startswith("==> log cap reached: ")
    assert set(tail) == {"é"}
    assert len(tail.encode()) <= 500
    assert f"({6000 - len(tail.encode())} bytes;" in marker
