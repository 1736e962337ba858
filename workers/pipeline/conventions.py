"""Checks a checked-out repository against the conventions Cartridge builds (README, "Repository
conventions"). Every problem is the repository's, so each raises `BuildFailed` with a message that
says what to change.

roles.json is read as strict JSON (RFC 8259): double-quoted strings, no trailing commas, no
comments. Deploy tooling and the application itself read the file from the image with ordinary
JSON parsers, so accepting a looser dialect here would only move the failure to deploy time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from workers.pipeline.outcomes import BuildFailed
from workers.pipeline.paths import inside_checkout
from workers.pipeline.roles import Role, parse_role

CONTAINER = "container"
COMPILE = "container/compile"
DEPENDENCIES = "container/dependencies"
ROLES = "container/roles.json"
FILES = "container/files"
STRICT_JSON_HINT = (
    "Cartridge reads it as strict JSON: double quotes around names and commands, "
    "no trailing commas, no comments"
)
_EXAMPLE = '{"web": "bin/server -p 8000", ".shell": "/bin/sh -l"}'
_ROLE_NAME = re.compile(r"^\.?[A-Za-z0-9][A-Za-z0-9_.:-]*$")


@dataclass(frozen=True)
class Conventions:
    roles: dict[str, Role]
    has_files: bool
    has_dependencies: bool


def check_repository(checkout: Path) -> Conventions:
    # Every path read below must resolve inside the checkout (see workers.pipeline.paths).
    for relative in (CONTAINER, COMPILE, DEPENDENCIES, ROLES, FILES):
        inside_checkout(checkout, relative)
    _check_executable(checkout, COMPILE, required=True)
    has_dependencies = _check_executable(checkout, DEPENDENCIES, required=False)
    files = checkout / FILES
    if files.exists() and (files.is_symlink() or not files.is_dir()):
        raise BuildFailed(f"{FILES} must be a directory (its tree is copied into the image root)")
    roles_path = checkout / ROLES
    if not roles_path.is_file() or roles_path.is_symlink():
        raise BuildFailed(f"{ROLES} is missing: it maps role names to commands, e.g. {_EXAMPLE}")
    return Conventions(
        roles=parse_roles(roles_path.read_bytes()),
        has_files=files.is_dir(),
        has_dependencies=has_dependencies,
    )


def _check_executable(checkout: Path, relative: str, *, required: bool) -> bool:
    path = checkout / relative
    if not path.exists() and not path.is_symlink():
        if required:
            raise BuildFailed(
                f"{relative} is missing: it is the executable that prepares the image "
                "(install dependencies, compile assets), run from /app at build time"
            )
        return False
    if path.is_symlink() or not path.is_file():
        raise BuildFailed(f"{relative} must be a regular file, not a directory or symlink")
    if not os.access(path, os.X_OK):
        raise BuildFailed(
            f"{relative} is not executable: run `git update-index --chmod=+x {relative}` "
            "and push again"
        )
    return True


def parse_roles(raw: bytes) -> dict[str, Role]:
    """The roles from the bytes of roles.json, or `BuildFailed` saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BuildFailed(f"{ROLES} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicates)
    except _DuplicateRole as exc:
        raise BuildFailed(f"{ROLES} defines the role {exc.args[0]!r} more than once") from exc
    except json.JSONDecodeError as exc:
        raise BuildFailed(
            f"{ROLES} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. "
            f"{STRICT_JSON_HINT}."
        ) from exc
    if not isinstance(document, dict):
        raise BuildFailed(
            f"{ROLES} must be a JSON object mapping role names to commands, e.g. {_EXAMPLE}"
        )
    roles: dict[str, Role] = {}
    for name, value in document.items():
        if not _ROLE_NAME.match(name):
            raise BuildFailed(
                f"{ROLES}: {name!r} is not a valid role name (letters, digits, '_', '-', '.', "
                "':'; a leading '.' marks a helper role)"
            )
        roles[name] = parse_role(name, value)
    return roles


class _DuplicateRole(ValueError):
    pass


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateRole(key)
        result[key] = value
    return result
