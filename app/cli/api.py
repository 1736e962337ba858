"""What the API-backed commands share: the HTTP client, its options and tables (errors are printed
by app/cli/errors.py)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import click
import httpx

from app.cli.errors import api_unreachable, from_response

DEFAULT_API_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"

Command = TypeVar("Command", bound=Callable[..., Any])


@dataclass(frozen=True)
class Event:
    event: str
    data: Any
    id: str | None


class ApiClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request("POST", path, json=body)

    def put(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request("PUT", path, json=body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, API_PREFIX + path, **kwargs)
        except httpx.HTTPError as exc:
            raise api_unreachable(self.base_url, exc) from exc
        if response.status_code >= 400:
            raise from_response(response)
        if response.status_code == 204:
            return None
        return response.json()

    def events(
        self, path: str, params: dict[str, Any], last_event_id: str | None
    ) -> Iterator[Event]:
        """Server-sent events from `path` until the server ends the stream."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        # Idle streams get a keep-alive comment every 15 s; a minute of silence means trouble.
        timeout = httpx.Timeout(10.0, read=60.0)
        try:
            with self._http.stream(
                "GET", API_PREFIX + path, params=params, headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise from_response(response)
                yield from parse_events(response.iter_lines())
        except httpx.HTTPError as exc:
            raise api_unreachable(self.base_url, exc) from exc


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    name, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield Event(name, json.loads("\n".join(data)), event_id)
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value


def api_command(command: Command) -> Command:
    """Adds --api-url, --token and --json, and hands the command an `api` client."""

    @click.option(
        "--api-url",
        envvar="CARTRIDGE_API_URL",
        default=DEFAULT_API_URL,
        show_default=True,
        help="Cartridge API base URL (or CARTRIDGE_API_URL).",
    )
    @click.option(
        "--token", envvar="CARTRIDGE_TOKEN", help="API token (or CARTRIDGE_TOKEN).", default=None
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
    @functools.wraps(command)
    def wrapper(*args: Any, api_url: str, token: str | None, **kwargs: Any) -> Any:
        return command(*args, api=ApiClient(api_url, token), **kwargs)

    return cast(Command, wrapper)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def when(value: str | None) -> str:
    """An API timestamp as `YYYY-MM-DD HH:MM:SS` (UTC), or `-`."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
