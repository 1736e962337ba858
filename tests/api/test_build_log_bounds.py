"""Bounded logs: chunks of bounded size, reads that fetch only the range asked for, and the
whole stored log as plain text."""

from __future__ import annotations

import random
import tracemalloc

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.builds import logs
from app.db import session_scope
from app.models import BuildLogChunk
from tests.support.factories import MakeBuild, MakeRepository


def _line(number: int) -> str:
    return f"line {number:07d} é ✓ {'x' * (number % 50)}\n"


def _write_log(build_id: int, attempt: int, lines: int, per_flush: int = 300) -> str:
    text = "".join(_line(n) for n in range(lines))
    with session_scope() as session:
        for start in range(0, len(text), per_flush * 40):
            logs.append(session, build_id, attempt, text[start : start + per_flush * 40])
    return text


def test_one_large_append_is_stored_in_bounded_chunks(
    session: Session, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    build = make_build(make_repository(), status="running")
    text = "".join(_line(n) for n in range(20_000))  # about 1 MB in one flush
    with session_scope() as writer:
        assert logs.append(writer, build.id, 1, text) == len(text)
    sizes = session.execute(
        select(func.length(BuildLogChunk.content)).where(BuildLogChunk.build_id == build.id)
    ).scalars()
    sizes = list(sizes)
    assert len(sizes) > 10
    assert max(sizes) <= logs.MAX_CHUNK_CHARS
    assert sum(sizes) == len(text)
    assert logs.read(session, build.id, 1, 0, len(text) + 10).content == text


def test_reads_at_any_offset_and_limit_match_the_text(
    session: Session, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    build = make_build(make_repository(), status="running")
    text = _write_log(build.id, 1, 5_000, per_flush=37)
    chosen = random.Random(11)
    boundaries = [0, 1, len(text) - 1, len(text), len(text) + 5, logs.MAX_CHUNK_CHARS]
    cases = [(offset, chosen.randint(1, 90_000)) for offset in boundaries]
    cases += [(chosen.randrange(len(text)), chosen.randint(1, 200_000)) for _ in range(200)]
    for offset, limit in cases:
        piece = logs.read(session, build.id, 1, offset, limit)
        expected = text[offset : offset + limit]
        assert piece.content == expected, (offset, limit)
        assert piece.next_offset == offset + len(expected)


def test_a_page_read_of_a_long_log_allocates_about_a_page(
    session: Session, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    build = make_build(make_repository(), status="succeeded")
    text = _write_log(build.id, 1, 250_000)  # about 12 MB of text
    assert len(text) > 10_000_000
    tracemalloc.start()
    try:
        piece = logs.read(session, build.id, 1, 1_000, 100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert piece.content == text[1_000:101_000]
    # The old read loaded every chunk past the offset: about 12 MB here (48 MB as str objects).
    assert peak < 2_000_000, peak


def test_log_txt_streams_the_whole_stored_log_of_an_attempt(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    build = make_build(make_repository(), status="running", attempt=2)
    first = _write_log(build.id, 1, 40_000)  # more than one batch of chunks
    second = _write_log(build.id, 2, 10)

    with client.stream("GET", f"/api/v1/builds/{build.id}/log.txt?attempt=1") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["x-cartridge-attempt"] == "1"
        received = b"".join(response.iter_bytes()).decode()
    assert received == first
    latest = client.get(f"/api/v1/builds/{build.id}/log.txt")
    assert latest.text == second
    empty = make_build(make_repository("octo/empty"), status="queued")
    assert client.get(f"/api/v1/builds/{empty.id}/log.txt").text == ""
    missing = client.get("/api/v1/builds/999999/log.txt")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "build_not_found"
    wrong = client.get(f"/api/v1/builds/{build.id}/log.txt?attempt=3")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "invalid_attempt"
