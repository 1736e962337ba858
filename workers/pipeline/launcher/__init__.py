"""Cartridge's launcher: what makes an image runnable by role name (`docker run IMAGE web`).

Every image gets, under /cartridge/:

- `tini`: Debian's tini-static, copied from the build host. It is pid 1: it forwards signals to
  pid 2 and reaps every orphan, so no zombie accumulates;
- `launch`: a POSIX shell script (this directory), run by tini as pid 2. It looks the role up in
  `roles/` (no role, or an unknown one, lists the roles and exits 2) and execs the shim;
- `shim`: `shim.c` of this directory, compiled static on the build host. It stays pid 2, starts
  the role's command line through `/bin/sh -c` as pid 3 (so no application believes it is
  daemonized) and forwards signals to it, SIGTERM translated to the role's stop signal;
- `roles/<name>` (one shell-quoted file per role) and `roles.txt` (the listing), generated from
  container/roles.json in a late layer of their own, so a change of roles invalidates nothing else.

The binaries come from the build host, never from a registry, and add well under 1 MB.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workers.pipeline.outcomes import BuildErrored
from workers.pipeline.roles import DEFAULT_STOP_SIGNAL, Role

SOURCES = Path(__file__).parent
LAUNCHER_DIR = "/cartridge"
ENTRYPOINT = [f"{LAUNCHER_DIR}/tini", "--", f"{LAUNCHER_DIR}/launch"]
# The context directories (next to Dockerfile, files/, repository/) that hold the launcher.
CONTEXT_LAUNCHER = "cartridge-launcher"
CONTEXT_ROLES = "cartridge-roles"
# Run right after the launcher is copied: a base without /bin/sh fails here, with a clear message,
# before anything slow. It is a cache hit for every later build on the same base image.
SHELL_CHECK = 'RUN ["/bin/sh", "-c", "exit 0"]'
_COMPILE_FLAGS = ["-static", "-Os", "-s", "-Wall"]
# Tokens after which a command line is no longer one simple command.
_CONTROL_OPERATORS = frozenset({";", "&", "&&", "|", "||", "(", ")", ";;"})
# First words that `exec` cannot take: reserved words and builtins that are no program.
_NOT_PROGRAMS = frozenset(
    [
        "!",
        "{",
        "}",
        "[[",
        "case",
        "do",
        "done",
        "elif",
        "else",
        "esac",
        "fi",
        "for",
        "function",
        "if",
        "in",
        "select",
        "then",
        "time",
        "until",
        "while",
        ":",
        ".",
        "alias",
        "bg",
        "break",
        "cd",
        "command",
        "continue",
        "eval",
        "exec",
        "exit",
        "export",
        "fg",
        "getopts",
        "hash",
        "jobs",
        "local",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "source",
        "times",
        "trap",
        "type",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
    ]
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Launcher:
    """The launcher's files on the build host."""

    tini: Path
    shim: Path
    launch: Path = SOURCES / "launch"

    def add_to(self, tar: tarfile.TarFile) -> None:
        for name, path in (("tini", self.tini), ("shim", self.shim), ("launch", self.launch)):
            info = tar.gettarinfo(str(path), f"{CONTEXT_LAUNCHER}/{name}")
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "", ""
            with path.open("rb") as source:
                tar.addfile(info, source)


def find_launcher(tini_path: Path, cache_dir: Path) -> Launcher:
    """The launcher of this build host: tini-static where Debian's tini package puts it, and the
    shim compiled once into `cache_dir`. `BuildErrored` when either cannot be had."""
    if not tini_path.is_file():
        raise BuildErrored(
            f"{tini_path} is missing on this build host: install Debian's tini package "
            "(it ships tini-static), or point CARTRIDGE_TINI_PATH at a static tini"
        )
    return Launcher(tini=tini_path, shim=compiled(SOURCES / "shim.c", cache_dir))


def compiled(source: Path, cache_dir: Path) -> Path:
    """`source` compiled to a static binary, cached under `cache_dir` by its content."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    binary = cache_dir / f"{source.stem}-{digest}"
    if binary.is_file():
        return binary
    compiler = shutil.which("musl-gcc") or shutil.which("cc")
    if compiler is None:
        raise BuildErrored(
            f"cannot build {source.name}: no C compiler on this build host "
            "(install Debian's musl-tools)"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: concurrent builds never run a half-written binary.
    fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=f".{source.stem}-")
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, *_COMPILE_FLAGS, "-o", partial, str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BuildErrored(f"cannot build {source.name}: {result.stderr.strip()[-500:]}")
        os.replace(partial, binary)
    finally:
        Path(partial).unlink(missing_ok=True)
    return binary


def add_roles(tar: tarfile.TarFile, roles: dict[str, Role]) -> None:
    """The role table the launcher reads: `roles/<name>` in shell quoting, and `roles.txt`."""
    for name, role in sorted(roles.items()):
        lines = [f"command={shell_quote(exec_line(role.command))}"]
        if role.stop_signal != DEFAULT_STOP_SIGNAL:
            lines.append(f"stop_signal={role.stop_signal}")
        _add_file(tar, f"{CONTEXT_ROLES}/roles/{name}", ("\n".join(lines) + "\n").encode())
    _add_file(tar, f"{CONTEXT_ROLES}/roles.txt", role_listing(roles).encode())


def exec_line(command: str) -> str:
    """The line `/bin/sh -c` runs for `command`: with `exec` in front when it is one simple
    command, so that the program replaces the shell as pid 3 and gets its signals.

    Shells do that by themselves for the last command of `-c`, but busybox's passes its own
    SIGQUIT-ignored disposition on when it does (an explicit `exec` resets it), which would make
    `stop_signal: QUIT` a no-op. Anything else (lists, pipelines, compound commands, leading
    assignments, builtins) runs as written; such a command line should `exec` its program itself.
    """
    if "\n" in command or "#" in command:
        return command
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        tokens = list(lexer)
    except ValueError:
        return command
    if not tokens or _CONTROL_OPERATORS.intersection(tokens):
        return command
    if tokens[0] in _NOT_PROGRAMS or _ASSIGNMENT.match(tokens[0]):
        return command
    return f"exec {command}"


def role_listing(roles: dict[str, Role]) -> str:
    if not roles:
        return "(none: container/roles.json is empty)\n"
    width = max(len(name) for name in roles)
    lines = []
    for name, role in sorted(roles.items()):
        notes = [note for note in (_helper(name), _stop(role)) if note]
        suffix = f"  ({'; '.join(notes)})" if notes else ""
        command = " ".join(role.command.split())
        lines.append(f"{name.ljust(width)}  {command}{suffix}")
    return "\n".join(lines) + "\n"


def _helper(name: str) -> str:
    return "helper" if name.startswith(".") else ""


def _stop(role: Role) -> str:
    return "" if role.stop_signal == DEFAULT_STOP_SIGNAL else f"stops on SIG{role.stop_signal}"


def shell_quote(text: str) -> str:
    """`text` as one single-quoted shell word (newlines included)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
