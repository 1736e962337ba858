"""`cartridge build` and `cartridge run`: a build host's build of a working tree, and a role of
the result, on this machine's Docker engine, with no control plane (workers/pipeline/local.py)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from app.cli.errors import CommandError, Unreachable
from app.config import Settings, get_settings

# The pipeline (docker-py and all) is imported by the two commands only: every other command of
# the CLI starts without it.


@click.command("build")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo", "repository", help="owner/name for the image's labels (default: origin's).")
@click.option("--base-image", help="Instead of CARTRIDGE_BASE_IMAGE.")
def build_command(path: Path, repository: str | None, base_image: str | None) -> None:
    """Build the working tree at PATH as a build host would, on the local Docker engine.

    Prints the log as it goes and the image's tag at the end: cartridge-local/NAME:SHA, or
    SHA-dirty when the tree has uncommitted changes.
    """
    from workers.pipeline.local import build_working_tree
    from workers.pipeline.outcomes import BuildErrored, BuildFailed
    from workers.pipeline.steplog import ConsoleLog

    settings = _local_settings()
    _check_engine(settings)
    log = ConsoleLog(sys.stdout)
    try:
        tree, image = build_working_tree(
            path, settings, log=log, repository=repository, base_image=base_image
        )
    except BuildFailed as failed:
        log.line(f"==> failed: {failed.message}")
        raise CommandError(failed.message, code="build_failed") from failed
    except BuildErrored as errored:
        log.line(f"==> errored: {errored.message}")
        raise CommandError(errored.message, code="build_errored") from errored
    log.line(f"==> built {tree.tag} ({image.image_id[:19]})")


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("role")
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
@click.option("--image", help="Any Cartridge image (default: the local build of --path).")
@click.option(
    "--path",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The working tree whose local build to run.",
)
@click.option("-p", "--publish", multiple=True, help="PORT, HOST_PORT:PORT or IP:HOST_PORT:PORT.")
@click.option("-e", "--env", "environment", multiple=True, help="NAME=VALUE, repeatable.")
def run_command(
    role: str,
    arguments: tuple[str, ...],
    image: str | None,
    path: Path,
    publish: tuple[str, ...],
    environment: tuple[str, ...],
) -> None:
    """Run ROLE of a Cartridge image in the foreground, with ARGUMENTS appended to its command
    (after `--` when they look like options of this command: `cartridge run web -p 8000 -- -v`).

    The container is named ROLE-N (the first N free) with the hostname ROLE-N.<this host's
    FQDN>, and removed when it stops. Published ports listen on 127.0.0.1 unless an IP is given.
    """
    from workers.pipeline.local import create_role_container, inspect_tree
    from workers.pipeline.outcomes import BuildErrored, BuildFailed

    settings = _local_settings()
    _check_engine(settings)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        reference = image or inspect_tree(path).tag
        name = create_role_container(
            settings,
            reference,
            role,
            list(arguments),
            publish=list(publish),
            environment=list(environment),
            interactive=interactive,
        )
    except BuildFailed as failed:
        raise CommandError(failed.message, code="image_not_found") from failed
    except BuildErrored as errored:
        raise CommandError(errored.message, code="container_not_created") from errored
    docker = shutil.which("docker")
    if docker is None:
        raise CommandError(f"created {name}, but the docker command is not installed")
    click.echo(f"==> {name}: {role} of {reference}", err=True)
    attach = ["--attach", "--interactive"] if interactive else ["--attach"]
    if settings.docker_host:
        os.environ["DOCKER_HOST"] = settings.docker_host
    # The docker CLI attaches the terminal, forwards signals and exits with the role's status.
    os.execvp(docker, [docker, "start", *attach, name])  # noqa: S606


def _check_engine(settings: Settings) -> None:
    """Exit status 3 (as for an unreachable API or database) when the engine does not answer."""
    from workers.pipeline.image_build import docker_api
    from workers.pipeline.outcomes import BuildErrored

    try:
        docker_api(settings.docker_host).close()
    except BuildErrored as unreachable:
        raise Unreachable(unreachable.message, code="docker_unreachable") from unreachable


def _local_settings() -> Settings:
    """The settings, with state (the compiled shim) in the user's cache rather than `./var`,
    which would be inside the very tree being built, unless CARTRIDGE_STATE_DIR says otherwise."""
    settings = get_settings()
    if "CARTRIDGE_STATE_DIR" in os.environ:
        return settings
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return settings.model_copy(update={"state_dir": cache / "cartridge"})
