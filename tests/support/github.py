"""Signing and delivering GitHub webhooks the way GitHub does."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any
from urllib.parse import urlencode

from tests.support.paths import PAYLOADS_DIR

ZERO_SHA = "0" * 40


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def load_payload(event: str, name: str) -> bytes:
    return (PAYLOADS_DIR / event / name).read_bytes()


def webhook_headers(
    event: str,
    body: bytes,
    secret: str | None,
    *,
    guid: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "123456",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "Content-Type": content_type,
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    return headers


def form_body(payload: bytes) -> bytes:
    return urlencode({"payload": payload.decode()}).encode()


def push_payload(
    full_name: str,
    *,
    ref: str = "refs/heads/main",
    after: str | None = None,
    before: str = "a" * 40,
    forced: bool = False,
    deleted: bool = False,
    clone_url: str | None = None,
    pusher: str = "octocat",
    pushed_at: int = 1795000000,
) -> dict[str, Any]:
    """A push payload shaped like GitHub's, for scenarios the recorded payloads lack."""
    after = ZERO_SHA if deleted else (after or uuid.uuid4().hex + "0" * 8)
    owner, name = full_name.split("/", 1)
    head = (
        None
        if deleted
        else {
            "id": after,
            "tree_id": "b" * 40,
            "distinct": True,
            "message": "Change things",
            "timestamp": "2026-11-27T05:00:00Z",
            "url": f"https://github.com/{full_name}/commit/{after}",
            "author": {"name": "Octo", "email": "octo@example.com", "username": pusher},
            "committer": {"name": "Octo", "email": "octo@example.com", "username": pusher},
            "added": [],
            "removed": [],
            "modified": ["README.md"],
        }
    )
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == ZERO_SHA,
        "deleted": deleted,
        "forced": forced,
        "base_ref": None,
        "compare": f"https://github.com/{full_name}/compare/x",
        "commits": [head] if head else [],
        "head_commit": head,
        "repository": {
            "id": 1,
            "name": name,
            "full_name": full_name,
            "private": False,
            "owner": {"login": owner, "name": owner, "id": 2},
            "clone_url": clone_url or f"https://github.com/{full_name}.git",
            "default_branch": "main",
            "master_branch": "main",
            "pushed_at": pushed_at,
            "created_at": 1700000000,
        },
        "pusher": {"name": pusher, "email": "octo@example.com"},
        "sender": {"login": pusher, "id": 2},
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
