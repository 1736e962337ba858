"""How a GitHub answer (or the lack of one) decides what happens to a status that was sent."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx

# GitHub's advice for a secondary rate limit that names no time: wait at least a minute.
DEFAULT_RATE_LIMIT_WAIT_SECONDS = 60.0
# X-RateLimit-Reset has one-second resolution and clocks drift: never retry on the dot.
RESET_MARGIN_SECONDS = 1.0
MAX_REASON_LENGTH = 500


class GitHubError(Exception):
    """A request to GitHub that did not succeed. `reason` is safe to store and show."""

    def __init__(self, reason: str, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON_LENGTH]
        self.status_code = status_code


class TransientGitHubError(GitHubError):
    """5xx, timeouts, connection failures: the same request may succeed later."""


class RateLimited(GitHubError):
    """403/429 rate limits: the same request may succeed at `retry_at` (epoch seconds)."""

    def __init__(self, reason: str, status_code: int, retry_at: float) -> None:
        super().__init__(reason, status_code)
        self.retry_at = retry_at


class PermanentGitHubError(GitHubError):
    """401, 404, 422 and other refusals: sending the same request again cannot help."""


def error_for(response: httpx.Response, now: float | None = None) -> GitHubError:
    """Classifies an unsuccessful answer."""
    now = time.time() if now is None else now
    code = response.status_code
    message = _message(response)
    if code == 429 or (code == 403 and _is_rate_limit(response, message)):
        return RateLimited(f"{code} rate limited: {message}", code, _retry_at(response, now))
    if code >= 500 or code == 408:
        return TransientGitHubError(f"{code} {message}", code)
    return PermanentGitHubError(f"{code} {message}", code)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message: str = body["message"]
        errors = body.get("errors")
        if isinstance(errors, list):
            details = [e.get("message") for e in errors if isinstance(e, dict) and e.get("message")]
            if details:
                message = f"{message} ({'; '.join(str(d) for d in details)})"
        return message
    return response.reason_phrase or "no message"


def _is_rate_limit(response: httpx.Response, message: str) -> bool:
    # A 403 is also GitHub's answer to missing permissions, which no wait will fix.
    headers = response.headers
    return (
        headers.get("x-ratelimit-remaining") == "0"
        or "retry-after" in headers
        or "rate limit" in message.lower()
    )


def _retry_at(response: httpx.Response, now: float) -> float:
    headers = response.headers
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        seconds = _seconds_from_retry_after(retry_after, now)
        if seconds is not None:
            return now + seconds
    reset = headers.get("x-ratelimit-reset")
    if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
        try:
            return max(now, float(reset) + RESET_MARGIN_SECONDS)
        except ValueError:
            pass
    return now + DEFAULT_RATE_LIMIT_WAIT_SECONDS


def _seconds_from_retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None
