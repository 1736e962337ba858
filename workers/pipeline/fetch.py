"""Fetching exactly one commit of a repository: a shallow fetch by SHA into a fresh directory.

The git token travels in an `http.extraHeader` set through git's environment (GIT_CONFIG_*), so it
is in no command line (`ps`), no `.git/config` and no log line.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from workers.pipeline.control import BuildControl
from workers.pipeline.outcomes import BuildErrored, BuildFailed
from workers.pipeline.steplog import StepLog

# ext:: and friends run arbitrary commands; ssh needs keys a build host does not have.
ALLOWED_PROTOCOLS = "http:https:file"
_MISSING_COMMIT = (
    "not our ref",
    "couldn't find remote ref",
    "no such remote ref",
    "unadvertised object",
    "upload-pack: not our",
)
_MISSING_REPOSITORY = ("repository not found", "not found", "does not appear to be a git")


def redact_url(url: str) -> str:
    """The URL without any user or password it may carry."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=host))


def git_environment(token: str | None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        # Neither the host's nor the worker user's git configuration (credential helpers,
        # URL rewrites) takes part in a build.
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    }
    if token:
        # GitHub accepts installation tokens and personal access tokens as a Basic password.
        credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credentials}",
            }
        )
    return env


def fetch_commit(
    clone_url: str,
    sha: str,
    checkout: Path,
    *,
    token: str | None,
    log: StepLog,
    control: BuildControl,
) -> None:
    """Leaves the tree of commit `sha` of `clone_url` in `checkout` (with a one-commit `.git`)."""
    env = git_environment(token)
    checkout.mkdir(parents=True)
    _git(["init", "-q", str(checkout)], env=env, log=log, control=control)
    _git(["remote", "add", "origin", clone_url], cwd=checkout, env=env, log=log, control=control)
    fetched = _git(
        ["fetch", "--depth", "1", "--no-tags", "--no-write-fetch-head", "origin", sha],
        cwd=checkout,
        env=env,
        log=log,
        control=control,
        check=False,
    )
    if fetched.returncode != 0:
        raise _fetch_problem(redact_url(clone_url), sha, fetched.output)
    # Checking out the full SHA itself (not a ref) leaves exactly that commit in the tree.
    _git(["checkout", "-q", "--detach", sha], cwd=checkout, env=env, log=log, control=control)


def _fetch_problem(url: str, sha: str, output: str) -> Exception:
    lowered = output.lower()
    if any(marker in lowered for marker in _MISSING_COMMIT):
        return BuildFailed(
            f"commit {sha} is not in {url}: it was never pushed there or a force-push removed it"
        )
    last = output.strip().splitlines()[-1] if output.strip() else "no output"
    if "authentication failed" in lowered or "could not read username" in lowered:
        return BuildErrored(f"{url} refused the build host's credentials (git token): {last}")
    if any(marker in lowered for marker in _MISSING_REPOSITORY):
        return BuildErrored(f"{url} could not be read (missing, or not shared with Cartridge)")
    return BuildErrored(f"git fetch of {url} failed: {last}")


@dataclass(frozen=True)
class _Result:
    returncode: int
    output: str


def _git(
    args: list[str],
    *,
    env: dict[str, str],
    log: StepLog,
    control: BuildControl,
    cwd: Path | None = None,
    check: bool = True,
) -> _Result:
    """Runs git, copying its output to the build log, and stops it if the build is aborted."""
    process = subprocess.Popen(
        ["git", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        while True:
            control.check()
            if control.remaining() <= 0:
                raise BuildErrored("the time limit passed while fetching the repository")
            try:
                raw, _ = process.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = raw.decode("utf-8", "replace")
    log.write(output)
    if check and process.returncode != 0:
        raise BuildErrored(f"git {args[0]} failed with status {process.returncode}")
    return _Result(process.returncode, output)
