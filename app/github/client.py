"""A small synchronous GitHub REST client for the workers: commit statuses only."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import httpx

from app.config import Settings, get_settings
from app.github.auth import AppInstallationAuth, Auth, TokenAuth
from app.github.errors import PermanentGitHubError, TransientGitHubError, error_for

API_VERSION = "2022-11-28"


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


class GitHubClient:
    def __init__(
        self,
        api_url: str,
        auth: Auth,
        *,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.auth = auth
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

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        # A cached installation token may have been revoked: one fresh token, one more try.
        for first_try in (True, False):
            authorization = self.auth.authorization(self._http)
            try:
                response = self._http.post(
                    path, json=body, headers={"Authorization": authorization}
                )
            except httpx.TimeoutException as exc:
                raise TransientGitHubError(f"timed out ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:
                raise TransientGitHubError(f"connection failed ({exc})") from exc
            if response.is_success:
                return response
            if response.status_code == 401 and first_try and self.auth.invalidate():
                continue
            raise error_for(response)
        raise AssertionError("unreachable")


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
