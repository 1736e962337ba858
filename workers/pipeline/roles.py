"""A role of container/roles.json: its command line, how it is stopped, and how a build checks
that it boots (its smoke check, see workers/pipeline/smoke.py).

A role is written either as its command line (`"web": "bin/server -p 8000"`) or as an object
(`"resque": {"command": "bundle exec rake resque:work", "stop_signal": "QUIT"}`). The stored
form (the `dev.cartridge.roles` label, the image row, the API) keeps the string form for a role
that has nothing but a command, so images built before the object form existed read the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.pipeline.outcomes import BuildFailed

ROLES = "container/roles.json"
DEFAULT_STOP_SIGNAL = "TERM"
# Signals a role may stop with, as the shim knows them (workers/pipeline/launcher/shim.c).
STOP_SIGNALS = frozenset(
    {"ABRT", "ALRM", "HUP", "INT", "KILL", "QUIT", "TERM", "USR1", "USR2", "WINCH"}
)
ROLE_KEYS = ("command", "stop_signal", "smoke")
SMOKE_KEYS = ("http", "path", "exec", "within_seconds")
DEFAULT_SMOKE_SECONDS = 20.0
MAX_SMOKE_SECONDS = 300.0
_SMOKE_EXAMPLE = '{"http": 8000, "path": "/healthz", "within_seconds": 20} or {"exec": "bin/check"}'


@dataclass(frozen=True)
class Smoke:
    """Passes once `http` answers 2xx or 3xx on `path`, or once `exec` exits 0, inside the role's
    running container, at most `within_seconds` after it started."""

    http: int | None = None
    path: str = "/"
    exec: str | None = None
    within_seconds: float = DEFAULT_SMOKE_SECONDS

    @property
    def stored(self) -> dict[str, Any]:
        check: dict[str, Any] = (
            {"http": self.http, "path": self.path} if self.http is not None else {"exec": self.exec}
        )
        return {**check, "within_seconds": self.within_seconds}

    def describe(self) -> str:
        if self.http is not None:
            return f"HTTP GET :{self.http}{self.path}"
        return f"`{self.exec}`"


@dataclass(frozen=True)
class Role:
    command: str
    stop_signal: str = DEFAULT_STOP_SIGNAL
    smoke: Smoke | None = None

    @property
    def stored(self) -> str | dict[str, Any]:
        """The role as the label and the API carry it: the string form when it is enough."""
        if self.stop_signal == DEFAULT_STOP_SIGNAL and self.smoke is None:
            return self.command
        stored: dict[str, Any] = {"command": self.command, "stop_signal": self.stop_signal}
        if self.smoke is not None:
            stored["smoke"] = self.smoke.stored
        return stored


def stored_roles(roles: dict[str, Role]) -> dict[str, str | dict[str, Any]]:
    return {name: role.stored for name, role in roles.items()}


def parse_role(name: str, value: object) -> Role:
    """The role `name` from its JSON value, or `BuildFailed` saying what to change."""
    if isinstance(value, str):
        return Role(command=_command(name, value))
    if not isinstance(value, dict):
        raise BuildFailed(
            f"{ROLES}: the command of role {name!r} must be a string (a command line), "
            f"not {json_type(value)}"
        )
    unknown = sorted(set(value) - set(ROLE_KEYS))
    if unknown:
        raise BuildFailed(
            f"{ROLES}: role {name!r} has the unknown key {unknown[0]!r}; a role object has "
            f"{', '.join(repr(key) for key in ROLE_KEYS)}"
        )
    if "command" not in value:
        raise BuildFailed(
            f'{ROLES}: role {name!r} has no "command": e.g. '
            f'{{"command": "bin/server", "stop_signal": "QUIT"}}'
        )
    command = value["command"]
    if not isinstance(command, str):
        raise BuildFailed(
            f"{ROLES}: the command of role {name!r} must be a string (a command line), "
            f"not {json_type(command)}"
        )
    return Role(
        command=_command(name, command),
        stop_signal=_stop_signal(name, value.get("stop_signal", DEFAULT_STOP_SIGNAL)),
        smoke=_smoke(name, value["smoke"]) if "smoke" in value else None,
    )


def _smoke(name: str, value: object) -> Smoke:
    where = f"{ROLES}: the smoke check of role {name!r}"
    if not isinstance(value, dict):
        raise BuildFailed(f"{where} must be an object, e.g. {_SMOKE_EXAMPLE}")
    unknown = sorted(set(value) - set(SMOKE_KEYS))
    if unknown:
        raise BuildFailed(
            f"{where} has the unknown key {unknown[0]!r}; a smoke check has "
            f"{', '.join(repr(key) for key in SMOKE_KEYS)}"
        )
    if ("http" in value) == ("exec" in value):
        raise BuildFailed(f'{where} needs exactly one of "http" and "exec", e.g. {_SMOKE_EXAMPLE}')
    within = value.get("within_seconds", DEFAULT_SMOKE_SECONDS)
    if (
        isinstance(within, bool)
        or not isinstance(within, int | float)
        or not 0 < within <= MAX_SMOKE_SECONDS
    ):
        raise BuildFailed(
            f'{where}: "within_seconds" must be a number of seconds above 0 and at most '
            f"{MAX_SMOKE_SECONDS:g}, not {within!r}"
        )
    if "exec" in value:
        command = value["exec"]
        if "path" in value:
            raise BuildFailed(f'{where}: "path" goes with "http", not "exec"')
        if not isinstance(command, str) or not command.strip() or "\0" in command:
            raise BuildFailed(f'{where}: "exec" must be a command line, not {command!r}')
        return Smoke(exec=command, within_seconds=float(within))
    port, path = value["http"], value.get("path", "/")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise BuildFailed(f'{where}: "http" must be a TCP port number (1-65535), not {port!r}')
    if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
        raise BuildFailed(f'{where}: "path" must start with "/" and hold no spaces, not {path!r}')
    return Smoke(http=port, path=path, within_seconds=float(within))


def _command(name: str, command: str) -> str:
    if not command.strip():
        raise BuildFailed(f"{ROLES}: the command of role {name!r} is empty")
    return command


def _stop_signal(name: str, value: object) -> str:
    signal = value.removeprefix("SIG") if isinstance(value, str) else None
    if signal not in STOP_SIGNALS:
        raise BuildFailed(
            f"{ROLES}: the stop_signal of role {name!r} must be a signal name, one of "
            f"{', '.join(sorted(STOP_SIGNALS))} (with or without SIG), not {value!r}"
        )
    return signal


def json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"
