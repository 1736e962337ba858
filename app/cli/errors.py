"""How every `cartridge` command reports a failure, whether the API refused a request or the same
rule refused it in this process: one line on standard error,

    error: <message> (<code>[, HTTP <status>])

then the error's details, indented, and one of the exit statuses below (README, "Command line").
"""

from __future__ import annotations

import json
from typing import IO, Any

import click
import httpx
from sqlalchemy.exc import OperationalError

from app.errors import CartridgeError

EXIT_REFUSED = 1  # Cartridge refused or failed the request (it says why, with a code)
EXIT_USAGE = 2  # the command line itself is wrong (click's own status)
EXIT_UNREACHABLE = 3  # the API or the database could not be reached or did not answer in time


class CommandError(click.ClickException):
    exit_code = EXIT_REFUSED

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.details = details or {}

    def format_message(self) -> str:
        where = [self.code] if self.code else []
        if self.http_status:
            where.append(f"HTTP {self.http_status}")
        lines = [f"{self.message} ({', '.join(where)})" if where else self.message]
        lines.extend(_detail_lines(self.details))
        return "\n".join(lines)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=file is None, file=file)


class Unreachable(CommandError):
    exit_code = EXIT_UNREACHABLE


def from_response(response: httpx.Response) -> CommandError:
    """The API's error envelope, `{"error": {"code", "message", "details"}}`, as a CommandError;
    an answer without one (a proxy in between, a server that is not Cartridge) as its text."""
    try:
        error = response.json()["error"]
        message, code = str(error["message"]), str(error["code"])
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:300] or response.reason_phrase
        return CommandError(text, http_status=response.status_code)
    details = error.get("details")
    return CommandError(
        message,
        code=code,
        http_status=response.status_code,
        details=details if isinstance(details, dict) else {},
    )


def from_domain(error: CartridgeError) -> CommandError:
    """A refusal raised in this process (a command that works on the database directly)."""
    return CommandError(error.message, code=str(error.code), details=dict(error.details))


def api_unreachable(base_url: str, error: httpx.HTTPError) -> CommandError:
    return Unreachable(f"cannot reach the Cartridge API at {base_url}: {error}")


def database_unreachable(error: OperationalError) -> CommandError:
    reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
    return Unreachable(f"cannot reach the database: {reason}")


class CommandGroup(click.Group):
    """The root command: errors raised by any subcommand are printed the one way above."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CartridgeError as error:
            raise from_domain(error) from error
        except OperationalError as error:
            raise database_unreachable(error) from error


def _detail_lines(details: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in details.items():
        if key == "errors" and isinstance(value, list):
            # Validation problems: where in the request, and what is wrong there.
            for problem in value:
                if isinstance(problem, dict):
                    where = ".".join(str(part) for part in problem.get("loc", []))
                    lines.append(f"  {where}: {problem.get('msg', '')}")
                else:
                    lines.append(f"  {problem}")
        elif isinstance(value, str) and "\n" in value:
            lines.append(f"  {key}:")
            lines.extend(f"    {line}" for line in value.splitlines())
        else:
            shown = value if isinstance(value, str) else json.dumps(value)
            lines.append(f"  {key}: {shown}")
    return lines
