"""Roles as an image stores them: container/roles.json, a role being its command line or an
object with a `command` and a `stop_signal` (images built before the object form hold command
lines only). Deploy tooling gets both views: commands, and how each role is stopped."""

from __future__ import annotations

from typing import Any

DEFAULT_STOP_SIGNAL = "TERM"


def role_commands(stored: dict[str, Any] | None) -> dict[str, str]:
    return {
        name: value if isinstance(value, str) else str(value.get("command", ""))
        for name, value in (stored or {}).items()
    }


def role_stop_signals(stored: dict[str, Any] | None) -> dict[str, str]:
    """Each role's stop signal (`docker stop` sends SIGTERM; the launcher translates it)."""
    return {
        name: DEFAULT_STOP_SIGNAL
        if isinstance(value, str)
        else str(value.get("stop_signal", DEFAULT_STOP_SIGNAL))
        for name, value in (stored or {}).items()
    }
