"""`GET /api/v1/events` against a real server and PostgreSQL: build changes, log progress,
latest-green changes, filters, resuming, and the LISTEN/NOTIFY wake-ups behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.builds import logs
from app.builds.lifecycle import transition
from app.db import get_session_factory, session_scope
from app.events import stream
from app.events.announce import announce_build_change
from app.events.cursor import EventCursor, SequenceCursor
from app.events.hub import Hub, _listen_dsn
from app.models import BuildStatus
from app.models.base import utcnow
from tests.support.factories import MakeBuild, MakeImage, MakePush, MakeRepository
from tests.support.server import serve

Event = dict[str, Any]


@contextmanager
def listening(url: str, **headers: str) -> Iterator[queue.Queue[Event]]:
    """Opens the stream, waits for its `ready` event, and collects events in a queue."""
    received: queue.Queue[Event] = queue.Queue()
    client = httpx.Client(timeout=30)

    def read() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            client.stream("GET", url, headers=headers) as response,
        ):
            assert response.status_code == 200, response.read()
            event: Event = {}
            for line in response.iter_lines():
                if not line:
                    if "event" in event:
                        received.put(event)
                    event = {}
                elif line.startswith("event: "):
                    event["event"] = line[7:]
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line.startswith("id: "):
                    event["id"] = line[4:]

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert received.get(timeout=10)["event"] == "ready"  # the stream is live
    # The reader is a daemon thread: it ends when the server closes the stream.
    yield received


def take(events: queue.Queue[Event], count: int, timeout: float = 10) -> list[Event]:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        got.append(events.get(timeout=max(0.01, deadline - time.monotonic())))
    return got


def nothing_more(events: queue.Queue[Event], wait: float = 1.5) -> bool:
    try:
        extra = events.get(timeout=wait)
    except queue.Empty:
        return True
    raise AssertionError(f"unexpected event {extra}")


def test_build_changes_log_progress_and_latest_green_arrive_live(
    app: FastAPI,
    make_repository: MakeRepository,
    make_build: MakeBuild,
    make_push: MakePush,
    make_image: MakeImage,
) -> None:
    repository = make_repository("octo/app")
    build = make_build(repository, status="queued")
    make_push(repository, "main", build)
    make_image(build)

    with serve(app) as url, listening(f"{url}/api/v1/events") as events:
        with session_scope() as session:
            transition(session, build.id, BuildStatus.RUNNING, started_at=utcnow())
        (running,) = take(events, 1)
        with session_scope() as session:
            logs.append(session, build.id, 1, "compiling\n")
        (progress,) = take(events, 1)
        with session_scope() as session:
            logs.append(session, build.id, 1, "done\n")
            transition(session, build.id, BuildStatus.SUCCEEDED, finished_at=utcnow())
        rest = take(events, 3)

    assert running["event"] == "build"
    assert running["data"] == {
        "build_id": build.id,
        "repository": "octo/app",
        "sha": build.sha,
        "status": "running",
        "attempt": 1,
        "branches": ["main"],
    }
    assert progress["event"] == "log"
    assert progress["data"] == {"build_id": build.id, "attempt": 1, "length": 10}
    assert [e["event"] for e in rest] == ["build", "latest_green", "log"]
    assert rest[0]["data"]["status"] == "succeeded"
    green = rest[1]["data"]
    assert (green["branch"], green["sha"], green["build_id"]) == ("main", build.sha, build.id)
    assert green["image"]["reference"].endswith(build.sha.ljust(64, "0")[:64])
    assert rest[2]["data"]["length"] == 15
    # Only the last event of a batch carries the cursor.
    assert "id" not in rest[0]
    assert "id" in rest[2]


def test_filters_by_repository_and_branch(
    app: FastAPI, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    app_repo, other_repo = make_repository("octo/app"), make_repository("octo/other")
    on_main = make_build(app_repo)
    make_push(app_repo, "main", on_main)
    on_topic = make_build(app_repo)
    make_push(app_repo, "topic", on_topic)
    elsewhere = make_build(other_repo)
    make_push(other_repo, "main", elsewhere)

    with (
        serve(app) as url,
        listening(f"{url}/api/v1/events?repo=octo/app&branch=main") as main_only,
        listening(f"{url}/api/v1/events?repo=octo/app") as whole_repo,
    ):
        for build in (elsewhere, on_topic, on_main):
            with session_scope() as session:
                transition(session, build.id, BuildStatus.RUNNING)
        repo_events = take(whole_repo, 2)
        main_events = take(main_only, 1)
        assert nothing_more(main_only)
        unknown = httpx.get(f"{url}/api/v1/events?repo=octo/nope")

    assert [e["data"]["build_id"] for e in repo_events] == [on_topic.id, on_main.id]
    assert main_events[0]["data"]["build_id"] == on_main.id
    assert unknown.status_code == 404


def test_a_reconnecting_client_gets_what_it_missed_and_nothing_twice(
    app: FastAPI, make_repository: MakeRepository, make_build: MakeBuild, make_push: MakePush
) -> None:
    repository = make_repository("octo/app")
    builds = [make_build(repository) for _ in range(3)]
    for build in builds:
        make_push(repository, "main", build)

    with serve(app) as url:
        with listening(f"{url}/api/v1/events") as first:
            with session_scope() as session:
                transition(session, builds[0].id, BuildStatus.RUNNING)
            (seen,) = take(first, 1)
        # Disconnected: these happen while no one listens.
        for build in builds[1:]:
            with session_scope() as session:
                transition(session, build.id, BuildStatus.CANCELLED, cancel_reason="x")
        with listening(f"{url}/api/v1/events", **{"Last-Event-ID": seen["id"]}) as resumed:
            replayed = take(resumed, 2)
            assert nothing_more(resumed)
        with listening(f"{url}/api/v1/events?after=0.0") as everything:
            from_start = take(everything, 3)
        bad = httpx.get(f"{url}/api/v1/events", headers={"Last-Event-ID": "1:2"})

    assert [(e["data"]["build_id"], e["data"]["status"]) for e in replayed] == [
        (builds[1].id, "cancelled"),
        (builds[2].id, "cancelled"),
    ]
    assert [e["data"]["status"] for e in from_start] == ["running", "cancelled", "cancelled"]
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_last_event_id"


def test_an_event_committed_after_a_later_one_is_not_skipped(
    database_url: str, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    """Sequence ids are taken at insert, not at commit: the reader remembers the gap."""
    repository = make_repository()
    slow_build, fast_build = make_build(repository), make_build(repository)
    cursor = EventCursor(SequenceCursor(0), SequenceCursor(0))
    slow = get_session_factory()()
    try:
        announce_build_change(slow, slow_build.id)  # takes the smaller id, commits later
        with session_scope() as fast:
            announce_build_change(fast, fast_build.id)
        first = stream.read_batch(stream.EventFilters(), cursor)
        slow.commit()
    finally:
        slow.close()
    second = stream.read_batch(stream.EventFilters(), cursor)
    third = stream.read_batch(stream.EventFilters(), cursor)

    assert [data["build_id"] for _, data in first.events] == [fast_build.id]
    assert [data["build_id"] for _, data in second.events] == [slow_build.id]
    assert third.events == []


def test_one_listen_connection_wakes_subscribers_of_the_build_that_changed(
    session: Session, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    repository = make_repository()
    watched, other = make_build(repository, status="running"), make_build(repository)

    async def scenario() -> tuple[bool, bool, bool]:
        hub = Hub(_listen_dsn())
        with (
            hub.subscribe(watched.id) as of_watched,
            hub.subscribe(other.id) as of_other,
            hub.subscribe() as of_any,
        ):
            deadline = time.monotonic() + 10
            while not hub.listening:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
            for subscription in (of_watched, of_other, of_any):
                subscription._flag.clear()

            def flush_log() -> None:
                with session_scope() as db:
                    logs.append(db, watched.id, 1, "line\n")

            await asyncio.to_thread(flush_log)
            await asyncio.wait_for(of_watched._flag.wait(), 5)
            await asyncio.wait_for(of_any._flag.wait(), 5)
            return of_watched._flag.is_set(), of_any._flag.is_set(), of_other._flag.is_set()

    # In a thread of its own: a browser test's driver may hold this thread's event loop.
    outcome: list[tuple[bool, bool, bool]] = []
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(scenario())))
    runner.start()
    runner.join(30)
    watched_woken, any_woken, other_woken = outcome[0]
    assert watched_woken
    assert any_woken
    assert not other_woken


def test_viewers_of_one_build_share_each_read(
    app: FastAPI, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    """Twenty viewers following one build: one query per flush, not twenty."""
    from app.builds import stream as log_stream

    build = make_build(make_repository(), status="running")
    reads = 0
    real_poll = log_stream._poll

    def counting_poll(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return real_poll(*args)

    log_stream._poll = counting_poll  # type: ignore[assignment]
    viewers = 20
    try:
        with serve(app) as url:
            started = threading.Barrier(viewers + 1)
            texts: list[str] = []

            def view() -> None:
                text = ""
                with httpx.stream(
                    "GET", f"{url}/api/v1/builds/{build.id}/log/stream", timeout=30
                ) as response:
                    started.wait(10)
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            data = json.loads(line[6:])
                            text += data.get("content", "")
                texts.append(text)

            threads = [threading.Thread(target=view) for _ in range(viewers)]
            for thread in threads:
                thread.start()
            started.wait(10)
            time.sleep(0.5)
            reads_before = reads
            for number in range(5):
                with session_scope() as db:
                    logs.append(db, build.id, 1, f"line {number}\n")
                time.sleep(0.3)
            with session_scope() as db:
                transition(db, build.id, BuildStatus.SUCCEEDED)
            for thread in threads:
                thread.join(20)
    finally:
        log_stream._poll = real_poll  # type: ignore[assignment]

    expected = "".join(f"line {n}\n" for n in range(5))
    assert texts == [expected] * viewers
    # Five flushes and the final change: a few reads each, not one per viewer.
    assert reads - reads_before < 6 * 4, reads - reads_before
