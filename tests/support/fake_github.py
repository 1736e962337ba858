"""A fake GitHub REST API on a loopback port: commit statuses, App installation tokens, branch
listings and the App's hook deliveries.

It validates every status request body against the requestBody schema of GitHub's OpenAPI
description (`commit-status-openapi.json`) and the 140-character description rule, checks the
Authorization header, records what it accepted, and can be told to fail the next requests the
ways GitHub does (5xx, rate limits, permanent refusals) or to hang past the client's timeout.

Branch listings and hook deliveries (`reconcile-and-checks-openapi.json`) are checked both ways:
each request's parameters and body, and each answer the fake gives, against the operation's
contract; a request that breaks it is refused (and noted in `rejections`), an answer that breaks
it is noted in `contract_violations`. Listings are paged through `Link` headers, carry ETags and
answer `If-None-Match` with 304; every other answer spends the primary rate budget, as GitHub's
do. Pushes made with `push()` move a branch and, when `webhook_url` is set, are delivered to it
the way GitHub delivers them (signed, once, never retried); a failed delivery shows in the App's
delivery list and can be redelivered with the same GUID.
"""

from __future__ import annotations

import hashlib
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
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import jsonschema
import jwt

from tests.support.github import ZERO_SHA, push_payload, sign
from tests.support.github_contract import contract
from tests.support.paths import SCHEMAS_DIR
from tests.support.server import free_port

DEFAULT_TOKEN = "ghp_fake_token"
STATUS_PATH = re.compile(r"^/repos/([^/]+)/([^/]+)/statuses/([^/]+)$")
TOKEN_PATH = re.compile(r"^/app/installations/([^/]+)/access_tokens$")
SHA = re.compile(r"^[0-9a-f]{40}$")
MAX_DESCRIPTION = 140
BRANCHES_PATH = re.compile(r"^/repos/([^/]+)/([^/]+)/branches$")
APP_DELIVERIES_PATH = "/app/hook/deliveries"
REDELIVERY_PATH = re.compile(r"^/app/hook/deliveries/([^/]+)/attempts$")
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
RATE_LIMIT = 5000


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
    body: Any = None
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


@dataclass
class HookDeliveryAttempt:
    id: int
    guid: str
    event: str
    delivered_at: datetime
    status: str
    status_code: int
    redelivery: bool

    def item(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": self.delivered_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "redelivery": self.redelivery,
            "duration": 0.03,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": None,
            "installation_id": 1,
            "repository_id": 1,
        }


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
        # Branch heads by repository (full names are case-insensitive on GitHub).
        self.repositories: dict[str, dict[str, str]] = {}
        self.rate_limit = RATE_LIMIT
        self.rate_used = 0
        self.rate_reset = time.time() + 3600
        self.contract_violations: list[str] = []
        # The App's hook deliveries, and where pushes are delivered (None: nowhere).
        self.webhook_url: str | None = None
        # Delivers instead of an HTTP POST to webhook_url (e.g. through a TestClient): takes the
        # body and headers, returns the HTTP status of the answer.
        self.webhook_sender: Callable[[bytes, dict[str, str]], int] | None = None
        self.webhook_secret = ""
        self.hook_deliveries: list[HookDeliveryAttempt] = []
        self.redelivery_requests: list[int] = []
        self._payloads: dict[str, tuple[str, bytes]] = {}
        self._next_delivery_id = 1000

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
            self.repositories.clear()
            self.contract_violations.clear()
            self.hook_deliveries.clear()
            self.redelivery_requests.clear()
            self._payloads.clear()
            self.rate_used = 0

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

    # Repositories and pushes.

    def set_branches(self, full_name: str, heads: dict[str, str]) -> None:
        with self._lock:
            self.repositories[full_name.lower()] = dict(heads)

    def push(
        self,
        full_name: str,
        branch: str,
        sha: str,
        *,
        forced: bool = False,
        guid: str | None = None,
    ) -> str:
        """Moves (or creates) the branch, then delivers the push webhook, as GitHub would.
        Returns the delivery's GUID."""
        with self._lock:
            branches = self.repositories.setdefault(full_name.lower(), {})
            before = branches.get(branch, ZERO_SHA)
            branches[branch] = sha
        payload = push_payload(
            full_name, ref=f"refs/heads/{branch}", before=before, after=sha, forced=forced
        )
        return self._deliver("push", json.dumps(payload).encode(), guid or str(uuid.uuid4()))

    def delete_branch(self, full_name: str, branch: str) -> str:
        with self._lock:
            before = self.repositories[full_name.lower()].pop(branch)
        payload = push_payload(full_name, ref=f"refs/heads/{branch}", before=before, deleted=True)
        return self._deliver("push", json.dumps(payload).encode(), str(uuid.uuid4()))

    def _deliver(self, event: str, body: bytes, guid: str, *, redelivery: bool = False) -> str:
        with self._lock:
            self._payloads[guid] = (event, body)
            self._next_delivery_id += 1
            delivery_id = self._next_delivery_id
        if self.webhook_url is None:
            status, code = "failed to connect", 0
        else:
            headers = {
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": guid,
                "X-GitHub-Hook-ID": "123456",
                "X-Hub-Signature-256": sign(body, self.webhook_secret),
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/044aadd",
            }
            try:
                if self.webhook_sender is not None:
                    code = self.webhook_sender(body, headers)
                else:
                    code = httpx.post(
                        self.webhook_url, content=body, headers=headers, timeout=10
                    ).status_code
                status = "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"
            except httpx.HTTPError:
                status, code = "failed to connect", 0
        attempt = HookDeliveryAttempt(
            delivery_id, guid, event, datetime.now(UTC), status, code, redelivery
        )
        with self._lock:
            self.hook_deliveries.append(attempt)
        return guid

    def add_hook_delivery(
        self, guid: str, event: str, *, status: str, status_code: int, age_seconds: float = 0
    ) -> HookDeliveryAttempt:
        """A delivery attempt GitHub made earlier, for the delivery list."""
        with self._lock:
            self._next_delivery_id += 1
            attempt = HookDeliveryAttempt(
                self._next_delivery_id,
                guid,
                event,
                datetime.fromtimestamp(time.time() - age_seconds, UTC),
                status,
                status_code,
                False,
            )
            self.hook_deliveries.append(attempt)
            return attempt

    def redeliver(self, delivery_id: int) -> None:
        """A redelivery asked for by hand (GitHub's UI): the same GUID, sent again."""
        self._redeliver(delivery_id)

    def counted_requests(self, method: str = "GET", prefix: str = "/repos/") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

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
        url = urlsplit(path)
        found = contract().find(method, url.path)
        if found is None:
            return Reply(404, body={"message": "Not Found"})
        operation, path_values = found
        query = parse_qs(url.query, keep_blank_values=True)
        body = json.loads(raw) if raw.strip() else None
        errors = contract().request_errors(operation, path_values, query, body)
        if errors:
            self._reject(f"contract: {method} {path}: {errors}")
            return Reply(422, body=_validation_error(errors))
        reply = self._contracted(method, url.path, query, headers)
        # Credentials refused and rate limits are answered by every endpoint; the REST
        # description leaves them out and reconcile-contract.md describes them.
        if reply.status not in (304, 401, 403, 429):
            errors = contract().response_errors(operation, reply.status, reply.body)
            if errors:
                with self._lock:
                    self.contract_violations.append(f"{method} {path} -> {reply.status}: {errors}")
        return reply

    def _contracted(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> Reply:
        authorization = headers.get("authorization", "")
        if method == "GET" and (match := BRANCHES_PATH.match(path)):
            if not self._authorized(authorization):
                self._reject("bad credentials")
                return Reply(401, body={"message": "Bad credentials"})
            return self._rated(
                lambda: self._list_branches(*map(unquote, match.groups()), query, headers)
            )
        if method == "GET" and path == APP_DELIVERIES_PATH:
            if not self._app_jwt_valid(authorization):
                return Reply(401, body={"message": "A JSON web token could not be decoded"})
            return self._list_deliveries(query)
        if method == "POST" and (match := REDELIVERY_PATH.match(path)):
            if not self._app_jwt_valid(authorization):
                return Reply(401, body={"message": "A JSON web token could not be decoded"})
            return self._redeliver(int(match.group(1)))
        return Reply(404, body={"message": "Not Found"})

    def _rated(self, answer: Callable[[], Reply]) -> Reply:
        """Spends the primary rate budget on every answer but 304, as GitHub does."""
        with self._lock:
            scripted = self._script.popleft() if self._script else None
            exhausted = self.rate_used >= self.rate_limit
        if scripted is not None:
            return scripted
        if exhausted:
            reply = Reply(403, body={"message": "API rate limit exceeded for installation."})
        else:
            reply = answer()
        with self._lock:
            if reply.status != 304 and not exhausted:
                self.rate_used += 1
            remaining = max(0, self.rate_limit - self.rate_used)
            reply.headers.update(
                {
                    "X-RateLimit-Limit": str(self.rate_limit),
                    "X-RateLimit-Remaining": str(remaining),
                    "X-RateLimit-Used": str(self.rate_used),
                    "X-RateLimit-Reset": str(int(self.rate_reset)),
                    "X-RateLimit-Resource": "core",
                }
            )
        return reply

    def _list_branches(
        self, owner: str, repo: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> Reply:
        with self._lock:
            branches = self.repositories.get(f"{owner}/{repo}".lower())
            heads = sorted(branches.items()) if branches is not None else None
        if heads is None:
            return Reply(404, body={"message": "Not Found"})
        per_page = min(MAX_PER_PAGE, int(query.get("per_page", [DEFAULT_PER_PAGE])[0]))
        page = max(1, int(query.get("page", ["1"])[0]))
        chunk = heads[(page - 1) * per_page : page * per_page]
        api = f"{self.url}/repos/{owner}/{repo}"
        body = [
            {
                "name": name,
                "commit": {"sha": sha, "url": f"{api}/commits/{sha}"},
                "protected": False,
            }
            for name, sha in chunk
        ]
        reply_headers: dict[str, str] = {}
        last = max(1, -(-len(heads) // per_page))
        if page < last:
            next_url = f"{api}/branches?per_page={per_page}&page={page + 1}"
            last_url = f"{api}/branches?per_page={per_page}&page={last}"
            reply_headers["Link"] = f'<{next_url}>; rel="next", <{last_url}>; rel="last"'
        digest = hashlib.sha256(json.dumps([body, reply_headers]).encode()).hexdigest()
        etag = f'W/"{digest}"'
        reply_headers["ETag"] = etag
        if headers.get("if-none-match") == etag:
            return Reply(304, reply_headers)
        return Reply(200, reply_headers, body)

    def _list_deliveries(self, query: dict[str, list[str]]) -> Reply:
        per_page = min(MAX_PER_PAGE, int(query.get("per_page", [DEFAULT_PER_PAGE])[0]))
        cursor = query.get("cursor", [None])[0]
        with self._lock:
            attempts = sorted(self.hook_deliveries, key=lambda a: a.id, reverse=True)
        if cursor is not None:
            attempts = [a for a in attempts if a.id < int(cursor.removeprefix("v1_"))]
        chunk = attempts[:per_page]
        headers: dict[str, str] = {}
        if len(attempts) > per_page:
            cursor_value = f"v1_{chunk[-1].id}"
            headers["Link"] = (
                f"<{self.url}{APP_DELIVERIES_PATH}?per_page={per_page}&cursor={cursor_value}>; "
                'rel="next"'
            )
        return Reply(200, headers, [attempt.item() for attempt in chunk])

    def _redeliver(self, delivery_id: int) -> Reply:
        with self._lock:
            attempt = next((a for a in self.hook_deliveries if a.id == delivery_id), None)
            self.redelivery_requests.append(delivery_id)
            stored = self._payloads.get(attempt.guid) if attempt is not None else None
        if attempt is None:
            return Reply(404, body={"message": "Not Found"})
        if stored is not None:
            event, body = stored
            self._deliver(event, body, attempt.guid, redelivery=True)
        return Reply(202, body={})

    def _app_jwt_valid(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        if self.app_public_key is None or scheme != "Bearer":
            self._reject("hook deliveries need the App's JWT")
            return False
        try:
            jwt.decode(value, self.app_public_key, algorithms=["RS256"], issuer=self.app_id)
        except jwt.InvalidTokenError as exc:
            self._reject(f"app JWT refused: {exc}")
            return False
        return True

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


def _validation_error(errors: list[str]) -> dict[str, Any]:
    return {
        "message": "Validation Failed",
        "documentation_url": "https://docs.github.com/rest",
        "errors": [{"code": "invalid", "message": error} for error in errors],
    }


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is what the hang scenario is for.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self._answer("POST")

        def do_GET(self) -> None:
            self._answer("GET")

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            reply = fake.handle(method, self.path, headers, raw)
            if reply.hang_seconds:
                fake.record(method, self.path, None)
                fake.wait(reply.hang_seconds)
                self.close_connection = True
                return
            fake.record(method, self.path, reply.status)
            if reply.status == 304:
                self.send_response(304)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                return
            payload = json.dumps(reply.body if reply.body is not None else {}).encode()
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
