"""Reading webhook bodies without trusting them.

Before a delivery is authenticated its body is not parsed at all: the repositories whose secret
may have signed it are found by scanning the raw bytes for `"full_name": "..."`. Once it is
authenticated, its nesting depth is checked on the raw bytes before any parser sees it, so a
document nested a hundred thousand levels deep is a 400, not a RecursionError.
"""

from __future__ import annotations

import json
import re

from app.errors import BadRequest, ErrorCode

# GitHub's payloads nest a handful of levels (push: payload > commits > commit > author).
MAX_JSON_DEPTH = 64
# A pull request names the head and base repositories before the repository it belongs to.
MAX_NAMED_REPOSITORIES = 8

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRINGS = re.compile(_STRING)
_FULL_NAME = re.compile(rb'"full_name"\s*:\s*(' + _STRING + rb")")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")
# `\u0000` preceded by an even number of backslashes: a NUL character, which PostgreSQL cannot
# store in text and no GitHub payload carries.
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def named_repositories(payload: bytes) -> list[str]:
    """The distinct repository names the payload mentions, in order, at most
    MAX_NAMED_REPOSITORIES of them, read from the raw bytes."""
    names: list[str] = []
    for match in _FULL_NAME.finditer(payload):
        try:
            name = json.loads(match.group(1))
        except ValueError:
            continue
        if isinstance(name, str) and name and name.lower() not in (n.lower() for n in names):
            names.append(name)
            if len(names) == MAX_NAMED_REPOSITORIES:
                break
    return names


def check_text(payload: bytes) -> None:
    """Refuses a document with a NUL character in a string."""
    if b"\\u0000" in payload and _NUL.search(payload):
        raise BadRequest(
            "The payload contains a NUL character (\\u0000).", code=ErrorCode.NUL_CHARACTER
        )


def check_depth(payload: bytes) -> None:
    """Refuses a document whose arrays and objects nest deeper than MAX_JSON_DEPTH."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_JSON_DEPTH:  # most pushes: cheap
        return
    brackets = _STRINGS.sub(b"", payload).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        depth += 1 if byte in _OPENERS else -1
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(
                f"The payload nests arrays or objects more than {MAX_JSON_DEPTH} levels deep.",
                code=ErrorCode.JSON_TOO_DEEP,
                max_depth=MAX_JSON_DEPTH,
            )
