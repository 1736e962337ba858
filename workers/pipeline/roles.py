"""A role of container/roles.json: its command line and how it is stopped.

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
ROLE_KEYS = ("command", "stop_signal")


@dataclass(frozen=True)
class Role:
    command: str
    stop_signal: str = DEFAULT_STOP_SIGNAL

    @property
    def stored(self) -> str | dict[str, Any]:
        """The role as the label and the API carry it: the string form when it is enough."""
        if self.stop_signal == DEFAULT_STOP_SIGNAL:
            return self.command
        return {"command": self.command, "stop_signal": self.stop_signal}


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
    )


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
