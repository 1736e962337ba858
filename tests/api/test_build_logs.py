from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.builds import logs
from app.builds.lifecycle import transition
from app.db import session_scope
from app.models import BuildStatus
from tests.support.factories import MakeBuild, MakeRepository
from tests.support.server import serve


def _append(build_id: int, attempt: int, text: str) -> None:
    with session_scope() as session:
        logs.append(session, build_id, attempt, text)


def test_log_reads_from_an_offset_and_says_when_it_is_complete(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, session: Session
) -> None:
    build = make_build(make_repository(), status="running")
    _append(build.id, 1, "step 1\n")
    _append(build.id, 1, "step 2\n")

    page = client.get(f"/api/v1/builds/{build.id}/log").json()
    assert page == {
        "build_id": build.id,
        "attempt": 1,
        "offset": 0,
        "next_offset": 14,
        "content": "step 1\nstep 2\n",
        "complete": False,  # still running: more may come
    }
    part = client.get(f"/api/v1/builds/{build.id}/log", params={"offset": 7, "limit": 4}).json()
    assert (part["content"], part["next_offset"], part["complete"]) == ("step", 11, False)

    transition(session, build.id, BuildStatus.SUCCEEDED)
    session.commit()
    rest = client.get(f"/api/v1/builds/{build.id}/log", params={"offset": 7}).json()
    assert (rest["content"], rest["complete"]) == ("step 2\n", True)
    not_all = client.get(f"/api/v1/builds/{build.id}/log", params={"limit": 3}).json()
    assert not_all["complete"] is False


def test_log_of_an_earlier_attempt(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    build = make_build(make_repository(), status="running", attempt=2)
    _append(build.id, 1, "first try\n")
    _append(build.id, 2, "second try\n")

    latest = client.get(f"/api/v1/builds/{build.id}/log").json()
    assert (latest["attempt"], latest["content"], latest["complete"]) == (2, "second try\n", False)
    earlier = client.get(f"/api/v1/builds/{build.id}/log", params={"attempt": 1}).json()
    # An earlier attempt is over even while the build runs again.
    assert (earlier["content"], earlier["complete"]) == ("first try\n", True)
    missing = client.get(f"/api/v1/builds/{build.id}/log", params={"attempt": 3})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "invalid_attempt"
    assert client.get(f"/api/v1/builds/{build.id}/log", params={"offset": -1}).status_code == 422


def _events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "event" in event:
                yield event
            event = {}
        elif line.startswith("event: "):
            event["event"] = line[len("event: ") :]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[len("data: ") :])
        elif line.startswith("id: "):
            event["id"] = line[len("id: ") :]


def _stream(
    url: str, received: threading.Event | None = None, **headers: str
) -> list[dict[str, Any]]:
    """Every event until the server ends the stream; `received` is set at the first one."""
    events = []
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in _events(response):
            events.append(event)
            if received is not None:
                received.set()
    return events


def _later(action: Any) -> threading.Thread:
    thread = threading.Thread(target=action)
    thread.start()
    return thread


def test_stream_delivers_text_as_it_is_written_and_ends_with_the_status(
    app: FastAPI, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    build = make_build(make_repository(), status="running")
    _append(build.id, 1, "compiling\n")

    streaming = threading.Event()

    def worker() -> None:
        # Written only once the client has the first text: it must arrive live.
        assert streaming.wait(10)
        _append(build.id, 1, "linking\n")
        time.sleep(0.3)
        _append(build.id, 1, "done\n")
        with session_scope() as session:
            transition(session, build.id, BuildStatus.FAILED, error="exit 1")

    with serve(app) as url:
        thread = _later(worker)
        events = _stream(f"{url}/api/v1/builds/{build.id}/log/stream", streaming)
        thread.join()

    assert events[0]["data"]["content"] == "compiling\n"
    text = "".join(e["data"]["content"] for e in events if e["event"] == "log")
    assert text == "compiling\nlinking\ndone\n"
    assert events[-1]["event"] == "end"
    assert events[-1]["data"]["status"] == "failed"
    assert events[-1]["data"]["next_offset"] == len(text)
    for event in events:
        if event["event"] == "log":
            assert event["id"] == f"1:{event['data']['next_offset']}"


def test_stream_resumes_from_an_offset_or_the_last_event_id(
    app: FastAPI, make_repository: MakeRepository, make_build: MakeBuild
) -> None:
    build = make_build(make_repository(), status="succeeded")
    _append(build.id, 1, "0123456789")
    with serve(app) as url:
        stream_url = f"{url}/api/v1/builds/{build.id}/log/stream"
        from_offset = _stream(f"{stream_url}?offset=4")
        # A reconnecting EventSource repeats the URL it first opened.
        resumed = _stream(f"{stream_url}?offset=4", **{"Last-Event-ID": "1:8"})
        bad = httpx.get(stream_url, headers={"Last-Event-ID": "garbage"})
    assert from_offset[0]["data"]["content"] == "456789"
    assert resumed[0]["data"]["content"] == "89"
    assert [e["event"] for e in resumed] == ["log", "end"]
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_last_event_id"


@pytest.mark.parametrize("resume", [{}, {"Last-Event-ID": "1:0"}], ids=["fresh", "resumed"])
def test_stream_follows_a_retry_into_the_new_attempt(
    app: FastAPI, make_repository: MakeRepository, make_build: MakeBuild, resume: dict[str, str]
) -> None:
    build = make_build(make_repository(), status="running")
    _append(build.id, 1, "host lost\n")

    streaming = threading.Event()

    def lease_expires_then_succeeds() -> None:
        assert streaming.wait(10)  # the client follows attempt 1 before attempt 2 starts
        with session_scope() as session:
            # What the lease sweeper does: the attempt is over, a new one starts.
            transition(session, build.id, BuildStatus.QUEUED)
            session.get_one(type(build), build.id).attempt = 2
        _append(build.id, 2, "second host\n")
        with session_scope() as session:
            transition(session, build.id, BuildStatus.RUNNING)
        with session_scope() as session:
            transition(session, build.id, BuildStatus.SUCCEEDED)

    with serve(app) as url:
        thread = _later(lease_expires_then_succeeds)
        events = _stream(f"{url}/api/v1/builds/{build.id}/log/stream", streaming, **resume)
        thread.join()

    assert [e["event"] for e in events] == ["log", "attempt", "log", "end"]
    assert events[1]["data"] == {"attempt": 2}
    assert events[2]["data"]["content"] == "second host\n"
    assert events[3]["data"]["status"] == "succeeded"


@pytest.mark.usefixtures("reads_need_token")
def test_stream_needs_a_token_when_reads_are_protected(
    client: TestClient, make_repository: MakeRepository, make_build: MakeBuild, auth: dict[str, str]
) -> None:
    build = make_build(make_repository(), status="succeeded")
    assert client.get(f"/api/v1/builds/{build.id}/log/stream").status_code == 401
    assert client.get(f"/api/v1/builds/{build.id}/log").status_code == 401
    with client.stream("GET", f"/api/v1/builds/{build.id}/log/stream", headers=auth) as response:
        assert response.status_code == 200
        assert "event: end" in response.read().decode()
