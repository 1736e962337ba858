"""A small synchronous GitHub REST client for the workers: commit statuses, branch heads and the
GitHub App's hook deliveries."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from app.config import Settings, get_settings
from app.github.auth import AppInstallationAuth, Auth, TokenAuth
from app.github.errors import PermanentGitHubError, TransientGitHubError, error_for

API_VERSION = "2022-11-28"
# GitHub's largest page; fewer pages cost fewer requests.
PER_PAGE = 100
# No push event is sent for more than 5,000 branches at once; 100 pages of 100 is past that.
MAX_BRANCH_PAGES = 100
MAX_DELIVERY_PAGES = 100


@dataclass(frozen=True)
class CommitStatus:
    state: str
    context: str
    description: str
    target_url: str | None

    def body(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "context": self.context,
            "description": self.description,
            "target_url": self.target_url,
        }


@dataclass
class RateBudget:
    """What the last answer said about the credential's primary rate limit."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None  # epoch seconds


@dataclass(frozen=True)
class BranchPage:
    """One page of `GET /repos/{owner}/{repo}/branches`, as kept for the next conditional ask."""

    path: str
    etag: str | None
    heads: dict[str, str]
    next_path: str | None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "etag": self.etag, "heads": self.heads, "next": self.next_path}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> BranchPage:
        return cls(value["path"], value.get("etag"), dict(value["heads"]), value.get("next"))


@dataclass(frozen=True)
class BranchListing:
    """Every branch head of a repository; `changed` is False when GitHub answered every page
    with 304 Not Modified (which costs no rate limit)."""

    pages: list[BranchPage]
    changed: bool
    requests: int

    @property
    def heads(self) -> dict[str, str]:
        heads: dict[str, str] = {}
        for page in self.pages:
            heads.update(page.heads)
        return heads


@dataclass(frozen=True)
class HookDelivery:
    """An item of `GET /app/hook/deliveries`: one attempt at delivering one event (`guid`)."""

    id: int
    guid: str
    delivered_at: datetime
    status: str
    status_code: int
    event: str
    redelivery: bool

    @property
    def succeeded(self) -> bool:
        # GitHub's own scripts count an attempt as done only when its status is "OK".
        return self.status == "OK"


@dataclass
class RequestCount:
    sent: int = 0
    not_modified: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


class GitHubClient:
    def __init__(
        self,
        api_url: str,
        auth: Auth,
        *,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.auth = auth
        self.api_url = api_url.rstrip("/")
        self.budget = RateBudget()
        self.requests = RequestCount()
        self._count_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=api_url.rstrip("/"),
            timeout=timeout_seconds,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "cartridge",
            },
        )

    def close(self) -> None:
        self._http.close()

    def create_status(self, full_name: str, sha: str, status: CommitStatus) -> None:
        """POST /repos/{owner}/{repo}/statuses/{sha}. Raises a `GitHubError` subclass."""
        owner, _, repo = full_name.partition("/")
        path = f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/statuses/{quote(sha)}"
        self._post(path, status.body())

    def list_branches(self, full_name: str, cached: list[BranchPage]) -> BranchListing:
        """Every branch and its head commit, page by page. Each page is asked with the ETag of
        the same page last time (`cached`); a 304 reuses what that page said then."""
        owner, _, repo = full_name.partition("/")
        path: str | None = (
            f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/branches?per_page={PER_PAGE}"
        )
        pages: list[BranchPage] = []
        changed = False
        while path is not None:
            if len(pages) >= MAX_BRANCH_PAGES:
                raise PermanentGitHubError(f"more than {MAX_BRANCH_PAGES} pages of branches")
            index = len(pages)
            previous = cached[index] if index < len(cached) else None
            if previous is not None and previous.path != path:
                previous = None
            headers = {"If-None-Match": previous.etag} if previous and previous.etag else {}
            response = self._request("GET", path, headers=headers)
            if response.status_code == 304 and previous is not None:
                page = previous
            else:
                page = BranchPage(
                    path, response.headers.get("etag"), _heads(response), self._next_path(response)
                )
                changed = True
            pages.append(page)
            path = page.next_path
        if len(pages) != len(cached):
            changed = True
        return BranchListing(pages, changed, len(pages))

    def list_app_hook_deliveries(self, since: datetime) -> list[HookDelivery]:
        """The GitHub App's hook deliveries back to `since` (newest first, as GitHub lists
        them). Needs the App's JWT: installation tokens cannot read them."""
        path: str | None = f"/app/hook/deliveries?per_page={PER_PAGE}"
        deliveries: list[HookDelivery] = []
        for _ in range(MAX_DELIVERY_PAGES):
            if path is None:
                break
            response = self._request("GET", path, app=True)
            items = [_hook_delivery(item) for item in _json_list(response)]
            deliveries.extend(item for item in items if item.delivered_at >= since)
            if not items or min(item.delivered_at for item in items) < since:
                break
            path = self._next_path(response)
        return deliveries

    def redeliver_app_hook(self, delivery_id: int) -> None:
        """Asks GitHub to send that delivery again (202: queued, not yet delivered)."""
        self._request("POST", f"/app/hook/deliveries/{int(delivery_id)}/attempts", app=True)

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._request("POST", path, json=body)

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        app: bool = False,
    ) -> httpx.Response:
        """One request, with the installation (or fixed) token, or with the App's JWT when
        `app`. Answers other than 2xx and 304 raise a `GitHubError` subclass."""
        # A cached installation token may have been revoked: one fresh token, one more try.
        for first_try in (True, False):
            authorization = self._app_authorization() if app else None
            authorization = authorization or self.auth.authorization(self._http)
            try:
                response = self._http.request(
                    method,
                    path,
                    json=json,
                    headers={**(headers or {}), "Authorization": authorization},
                )
            except httpx.TimeoutException as exc:
                raise TransientGitHubError(f"timed out ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:
                raise TransientGitHubError(f"connection failed ({exc})") from exc
            self._observe(path, response)
            if response.is_success or response.status_code == 304:
                return response
            if response.status_code == 401 and first_try and not app and self.auth.invalidate():
                continue
            raise error_for(response)
        raise AssertionError("unreachable")

    def _app_authorization(self) -> str:
        if not isinstance(self.auth, AppInstallationAuth):
            raise PermanentGitHubError("hook deliveries can only be read by a GitHub App")
        return f"Bearer {self.auth.app_jwt()}"

    def _observe(self, path: str, response: httpx.Response) -> None:
        route = path.split("?", 1)[0]
        with self._count_lock:
            self.requests.sent += 1
            if response.status_code == 304:
                self.requests.not_modified += 1
            self.requests.by_path[route] = self.requests.by_path.get(route, 0) + 1
            headers = response.headers
            for name, attribute in (("limit", "limit"), ("remaining", "remaining")):
                value = headers.get(f"x-ratelimit-{name}")
                if value is not None and value.isdigit():
                    setattr(self.budget, attribute, int(value))
            reset = headers.get("x-ratelimit-reset")
            if reset is not None and reset.isdigit():
                self.budget.reset_at = float(reset)

    def _next_path(self, response: httpx.Response) -> str | None:
        """The `rel="next"` URL of the Link header, as a path under the API's base URL. A link
        elsewhere is refused: the credentials go with the request."""
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        base = urlsplit(self.api_url)
        target = urlsplit(link)
        if not target.scheme:
            return link
        if (target.scheme, target.netloc) != (
            base.scheme,
            base.netloc,
        ) or not target.path.startswith(base.path):
            raise PermanentGitHubError(f"GitHub's next page is outside {self.api_url}: {link}")
        relative = target.path[len(base.path) :] or "/"
        return f"{relative}?{target.query}" if target.query else relative


def _json_list(response: httpx.Response) -> list[Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientGitHubError(f"{response.status_code} answer is not JSON") from exc
    if not isinstance(body, list):
        raise TransientGitHubError(f"{response.status_code} answer is not a list")
    return body


def _heads(response: httpx.Response) -> dict[str, str]:
    try:
        return {str(item["name"]): str(item["commit"]["sha"]) for item in _json_list(response)}
    except (KeyError, TypeError) as exc:
        raise TransientGitHubError("a branch in GitHub's answer has no name or commit") from exc


def _hook_delivery(item: Any) -> HookDelivery:
    try:
        return HookDelivery(
            id=int(item["id"]),
            guid=str(item["guid"]),
            delivered_at=datetime.fromisoformat(str(item["delivered_at"])),
            status=str(item["status"]),
            status_code=int(item["status_code"]),
            event=str(item["event"]),
            redelivery=bool(item["redelivery"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TransientGitHubError("a hook delivery in GitHub's answer is malformed") from exc


def auth_from_settings(settings: Settings) -> Auth:
    if settings.github_app_configured:
        return AppInstallationAuth(
            str(settings.github_app_id),
            str(settings.github_app_installation_id),
            _private_key(settings),
            refresh_before_expiry_seconds=settings.github_app_token_refresh_seconds,
        )
    if settings.github_token is not None:
        return TokenAuth(settings.github_token.get_secret_value())
    raise PermanentGitHubError(
        "no GitHub credentials: set CARTRIDGE_GITHUB_TOKEN or the CARTRIDGE_GITHUB_APP_* settings"
    )


def _private_key(settings: Settings) -> str:
    if settings.github_app_private_key is not None:
        return settings.github_app_private_key.get_secret_value()
    path = settings.github_app_private_key_path
    assert path is not None
    try:
        return path.read_text()
    except OSError as exc:
        raise PermanentGitHubError(f"cannot read the GitHub App private key {path}: {exc}") from exc


def client_from_settings(settings: Settings) -> GitHubClient:
    return GitHubClient(
        settings.github_api_url,
        auth_from_settings(settings),
        timeout_seconds=settings.github_timeout_seconds,
    )


@lru_cache
def get_github_client() -> GitHubClient:
    """One client per process, so connections and the installation token are reused."""
    return client_from_settings(get_settings())
