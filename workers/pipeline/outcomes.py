"""How a build stops early. The class decides the build's final status (see DESIGN section 4)."""

from __future__ import annotations


class BuildStopped(Exception):
    """The pipeline stopped before producing a verified image."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BuildFailed(BuildStopped):
    """The repository is at fault (compile exited non-zero, invalid roles.json, unknown SHA):
    the build becomes `failed`."""


class BuildErrored(BuildStopped):
    """Cartridge or its infrastructure is at fault (Docker engine, registry, timeout): the
    build becomes `errored`."""


class BuildCancelled(BuildStopped):
    """Someone else already moved the build to `cancelled`; nothing is left to record."""


class BuildHandedBack(BuildStopped):
    """This attempt no longer owns the build (its lease was taken over, or it was handed back
    at shutdown): nothing is recorded, the next attempt does the work."""
