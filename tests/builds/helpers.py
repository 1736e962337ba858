"""A sample application that follows Cartridge's conventions, and small helpers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from app.builds import logs
from app.models import Build

COMPILE = """#!/bin/sh
set -e
echo "compiling $(cat /app/REVISION)"
mkdir -p /app/public
echo "hello from $(cat /app/REVISION)" > /app/public/index.html
"""
ROLES = {
    "web": "busybox httpd -f -p 8000 -h /app/public",
    # Quotes, a dollar, a backslash and non-ASCII text survive the trip through image labels.
    "report": """sh -c 'echo "$HOME" \\\\ done, café'""",
    ".shell": "/bin/sh -l",
}


def sample_files(changes: dict[str, str] | None = None) -> dict[str, str]:
    """The sample application's files, with `changes` (path -> content) applied."""
    files = {
        "README.md": "A sample application.\n",
        "container/compile": COMPILE,
        "container/roles.json": json.dumps(ROLES, indent=2, ensure_ascii=False) + "\n",
        "container/files/etc/sample.conf": "greeting=hello\n",
    }
    files.update(changes or {})
    return files


EXECUTABLES = ("container/compile", "container/dependencies")


def reload(session: Session, build: Build) -> Build:
    session.expire_all()
    fresh = session.get(Build, build.id)
    assert fresh is not None
    return fresh


def log_of(session: Session, build: Build, attempt: int | None = None) -> str:
    return logs.read(session, build.id, attempt or reload(session, build).attempt).content


def wait_for(what: str, condition: Callable[[], object], timeout: float = 60) -> object:
    """Polls `condition` until it returns something truthy, which it returns."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
