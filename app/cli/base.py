"""`cartridge base build`: the installation's base image from Debian's packages
(workers/debootstrap.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from app.cli.errors import CommandError
from app.config import get_settings

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "base"


@click.group("base")
def base() -> None:
    """Base images: built with debootstrap, pushed to Cartridge's registry."""


@base.command("build")
@click.option(
    "--config",
    "config_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="A directory with debootstrap.conf and packages.txt.",
)
@click.option("--suite", help="Debian release (default: the config's SUITE).")
@click.option("--mirror", help="Debian mirror (default: the config's MIRROR).")
@click.option("--variant", help="debootstrap variant (default: the config's VARIANT).")
@click.option("--name", help="Image name in the registry (default: the config's NAME).")
@click.option("--no-push", is_flag=True, help="Import it into the local engine only.")
def base_build(
    config_dir: Path,
    suite: str | None,
    mirror: str | None,
    variant: str | None,
    name: str | None,
    no_push: bool,
) -> None:
    """Build a base image with debootstrap and push it; prints its reference by digest, for
    CARTRIDGE_BASE_IMAGE or a repository's base_image. Needs root (debootstrap)."""
    from dataclasses import replace

    from workers.debootstrap import build_base, read_config
    from workers.pipeline.control import BuildControl
    from workers.pipeline.image_build import docker_api
    from workers.pipeline.outcomes import BuildStopped
    from workers.pipeline.steplog import ConsoleLog

    settings = get_settings()
    spec = read_config(config_dir)
    spec = replace(
        spec,
        suite=suite or spec.suite,
        mirror=mirror or spec.mirror,
        variant=variant or spec.variant,
        name=name or spec.name,
    )
    log = ConsoleLog(sys.stderr)
    try:
        api = docker_api(settings.docker_host, timeout=600)
        reference = build_base(
            spec,
            api=api,
            registry=settings.registry_url,
            engine_registry=settings.engine_registry_url,
            log=log,
            control=BuildControl(api, deadline=time.monotonic() + 3600),
            push=not no_push,
            cache_dir=settings.state_dir / "debootstrap-cache",
        )
    except BuildStopped as stopped:
        raise CommandError(stopped.message, code="base_build_failed") from stopped
    click.echo(reference)
