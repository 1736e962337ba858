"""A fake GitHub REST API on a loopback port: commit statuses and App installation tokens.

It validates every status request body against the requestBody schema of GitHub's OpenAPI
description (`commit-status-openapi.json`) and the 140-character description rule, checks the
Authorization header, records what it accepted, and can be told to fail the next requests the
ways GitHub does (5xx, rate limits, permanent refusals) or to hang past the client's timeout.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import jwt

from tests.support.paths import SCHEMAS_DIR
from tests.support.server import free_port

DEFAULT_TOKEN = "ghp_fake_token"
STATUS_PATH = re.compile(r"^/repos/([^/]+)/([^/]+)/statuses/([^/]+)$")
TOKEN_PATH = re.compile(r"^/app/installations/([^/]+)/access_tokens$")
SHA = re.compile(r"^[0-9a-f]{40}$")
MAX_DESCRIPTION = 140


@cache
def status_request_validator() -> jsonschema.protocols.Validator:
    spec = json.loads((SCHEMAS_DIR / "commit-status-openapi.json").read_text())
    operation = spec["paths"]["/repos/{owner}/{repo}/statuses/{sha}"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema.Draft7Validator(_from_openapi(schema))


def _from_openapi(node: Any) -> Any:
    """OpenAPI 3.0 says `nullable: true`; JSON Schema says `type: [..., "null"]`."""
    if isinstance(node, list):
        return [_from_openapi(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _from_openapi(value) for key, value in node.items()}
    if converted.pop("nullable", False) and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    hang_seconds: float = 0.0


@dataclass(frozen=True)
class ReceivedStatus:
    owner: str
    repo: str
    sha: str
    state: str
    description: str | None
    context: str | None
    target_url: str | None
    authorization: str
    received_at: float


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    answered: int | None
    received_at: float


class FakeGitHub:
    def __init__(
        self,
        *,
        token: str | None = DEFAULT_TOKEN,
        app_id: str | None = None,
        installation_id: str | None = None,
        app_public_key: str | None = None,
        prefix: str = "",
        token_lifetime_seconds: float = 3600.0,
        latency_seconds: float = 0.0,
    ) -> None:
        self.token = token
        self.app_id = app_id
        self.installation_id = installation_id
        self.app_public_key = app_public_key
        self.prefix = prefix.rstrip("/")
        self.token_lifetime_seconds = token_lifetime_seconds
        # Each status answer waits a random time up to this, so concurrent requests may be
        # answered in another order than they were sent, as on the real network.
        self.latency_seconds = latency_seconds
        self.statuses: list[ReceivedStatus] = []
        self.requests: list[Request] = []
        self.rejections: list[str] = []
        self.issued_tokens: dict[str, float] = {}
        self.token_requests = 0
        # Status requests that reached the server, answered or not yet.
        self.arrivals = 0
        self._script: deque[Reply] = deque()
        self._delays: deque[float] = deque()
        # Reentrant: wait_for holds it while a predicate reads through the public helpers.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # Lifecycle.

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def start(self) -> FakeGitHub:
        self.port = free_port()
        self._server = _QuietServer(("127.0.0.1", self.port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.statuses.clear()
            self.requests.clear()
            self.rejections.clear()
            self._script.clear()
            self._delays.clear()
            self.token_requests = 0
            self.arrivals = 0
            self.latency_seconds = 0.0

    # Scripting the next answers to status requests.

    def reply_next(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def fail_next(self, status: int, *, times: int = 1, message: str = "Server Error") -> None:
        self.reply_next(*[Reply(status, body={"message": message}) for _ in range(times)])

    def rate_limit_next(self, *, reset_in: float) -> int:
        """A primary rate limit: 403 with X-RateLimit-Remaining 0. Returns the reset epoch."""
        reset = int(time.time() + reset_in)
        headers = {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Used": "5000",
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Resource": "core",
        }
        message = "API rate limit exceeded for installation."
        self.reply_next(Reply(403, headers, {"message": message}))
        return reset

    def secondary_rate_limit_next(self, *, retry_after: int) -> None:
        message = "You have exceeded a secondary rate limit. Please wait a few minutes."
        self.reply_next(Reply(429, {"Retry-After": str(retry_after)}, {"message": message}))

    def delay_next(self, seconds: float) -> None:
        """The next status request is answered normally, but only after `seconds`."""
        with self._lock:
            self._delays.append(seconds)

    def hang_next(self, seconds: float, *, times: int = 1) -> None:
        self.reply_next(*[Reply(201, hang_seconds=seconds) for _ in range(times)])

    def expire_tokens(self) -> None:
        """GitHub revoked every installation token issued so far."""
        with self._lock:
            for token in self.issued_tokens:
                self.issued_tokens[token] = 0.0

    # Reading what was received.

    def statuses_for(self, sha: str) -> list[ReceivedStatus]:
        with self._lock:
            return [s for s in self.statuses if s.sha == sha]

    def wait_for(self, predicate: Callable[[FakeGitHub], bool], *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return
            time.sleep(0.05)
        seen = [(s.sha[:7], s.state, s.description) for s in self.statuses]
        raise AssertionError(
            f"timed out; statuses: {seen}; requests: {self.requests}; rejections: {self.rejections}"
        )

    # Request handling (runs on the server's threads).

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        if not path.startswith(self.prefix + "/"):
            return Reply(404, body={"message": "Not Found"})
        path = path[len(self.prefix) :]
        if method == "POST" and (match := TOKEN_PATH.match(path)):
            return self._issue_token(match.group(1), headers.get("authorization", ""))
        if method == "POST" and (match := STATUS_PATH.match(path)):
            return self._create_status(*match.groups(), headers, raw)
        return Reply(404, body={"message": "Not Found"})

    def record(self, method: str, path: str, answered: int | None) -> None:
        with self._lock:
            self.requests.append(Request(method, path, answered, time.time()))

    def _issue_token(self, installation_id: str, authorization: str) -> Reply:
        with self._lock:
            self.token_requests += 1
        if self.app_public_key is None or installation_id != self.installation_id:
            return Reply(404, body={"message": "Not Found"})
        scheme, _, value = authorization.partition(" ")
        try:
            if scheme != "Bearer":
                raise jwt.InvalidTokenError("not a bearer JWT")
            claims = jwt.decode(
                value,
                self.app_public_key,
                algorithms=["RS256"],
                issuer=self.app_id,
                options={"require": ["iat", "exp", "iss"]},
            )
            if claims["exp"] - claims["iat"] > 600:
                raise jwt.InvalidTokenError("JWT valid for more than 10 minutes")
        except jwt.InvalidTokenError as exc:
            self._reject(f"app JWT refused: {exc}")
            return Reply(401, body={"message": f"A JSON web token could not be decoded ({exc})"})
        token = f"ghs_{uuid.uuid4().hex}"
        expires = time.time() + self.token_lifetime_seconds
        with self._lock:
            self.issued_tokens[token] = expires
        expires_at = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "token": token,
            "expires_at": expires_at,
            "permissions": {"statuses": "write"},
            "repository_selection": "all",
        }
        return Reply(201, body=body)

    def _authorized(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        if scheme not in ("Bearer", "token") or not value:
            return False
        if self.token is not None and value == self.token:
            return True
        with self._lock:
            return self.issued_tokens.get(value, 0.0) > time.time()

    def _create_status(
        self, owner: str, repo: str, sha: str, headers: dict[str, str], raw: bytes
    ) -> Reply:
        with self._lock:
            self.arrivals += 1
            delay = self._delays.popleft() if self._delays else 0.0
        if delay:
            self.wait(delay)
        if self.latency_seconds:
            self.wait(random.uniform(0, self.latency_seconds))
        authorization = headers.get("authorization", "")
        if not self._authorized(authorization):
            self._reject("bad credentials")
            return Reply(401, body={"message": "Bad credentials"})
        try:
            body = json.loads(raw)
        except ValueError:
            self._reject("body is not JSON")
            return Reply(400, body={"message": "Problems parsing JSON"})
        errors = [e.message for e in status_request_validator().iter_errors(body)]
        if errors:
            self._reject(f"schema: {errors}")
            return Reply(422, body={"message": "Invalid request.", "errors": errors})
        description = body.get("description")
        if isinstance(description, str) and len(description) > MAX_DESCRIPTION:
            self._reject(f"description of {len(description)} characters")
            return _validation_failed("description is too long (maximum is 140 characters)")
        if not SHA.match(sha):
            self._reject(f"not a commit SHA: {sha}")
            return Reply(422, body={"message": f"No commit found for SHA: {sha}"})
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return scripted
        received = ReceivedStatus(
            owner=owner,
            repo=repo,
            sha=sha,
            state=body["state"],
            description=description,
            context=body.get("context"),
            target_url=body.get("target_url"),
            authorization=authorization,
            received_at=time.time(),
        )
        with self._lock:
            self.statuses.append(received)
            number = len(self.statuses)
        return Reply(201, {"Location": f"/repos/{owner}/{repo}/statuses/{sha}"}, {"id": number})

    def _reject(self, why: str) -> None:
        with self._lock:
            self.rejections.append(why)

    def wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _validation_failed(message: str) -> Reply:
    body = {
        "message": "Validation Failed",
        "errors": [
            {"resource": "Status", "code": "custom", "field": "description", "message": message}
        ],
        "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
    }
    return Reply(422, body=body)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is what the hang scenario is for.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            reply = fake.handle("POST", self.path, headers, raw)
            if reply.hang_seconds:
                fake.record("POST", self.path, None)
                fake.wait(reply.hang_seconds)
                self.close_connection = True
                return
            fake.record("POST", self.path, reply.status)
            payload = json.dumps(reply.body or {}).encode()
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
