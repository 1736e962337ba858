"""`cartridge registry ...` and `cartridge proxy-config`: replicas, their health and the pull
proxy's nginx config."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

import click

from app.config import get_settings
from app.db import session_scope
from app.errors import CartridgeError
from app.registries import queries, service
from app.registries.gc import collect_garbage, leave_maintenance
from app.registries.proxy import proxy_config
from app.registries.proxy_supervisor import ProxySupervisor
from app.registry_auth.replica_config import distribution_auth_section


def _fail(error: CartridgeError) -> NoReturn:
    click.echo(f"error ({error.code}): {error.message}", err=True)
    for key, value in error.details.items():
        click.echo(f"  {key}: {value}", err=True)
    sys.exit(1)


@click.group("registry")
def registry() -> None:
    """Registry replicas every image is pushed to."""


@registry.command("add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--optional",
    is_flag=True,
    help="Builds do not wait for this replica; it is still pushed to and repaired.",
)
def registry_add(name: str, url: str, optional: bool) -> None:
    """Add replica NAME at URL (host:port as Docker names it)."""
    try:
        with session_scope() as session:
            row = service.create_registry(session, name, url, required=not optional)
            click.echo(f"registry {row.name} added ({row.url}, {_role(row.required)})")
    except CartridgeError as error:
        _fail(error)


@registry.command("set")
@click.argument("name")
@click.option("--url", default=None, help="New host:port.")
@click.option("--required/--optional", default=None, help="Whether builds wait for it.")
def registry_set(name: str, url: str | None, required: bool | None) -> None:
    """Change replica NAME's URL or whether it is required."""
    try:
        with session_scope() as session:
            row = service.update_registry(session, name, url=url, required=required)
            click.echo(f"registry {row.name}: {row.url}, {_role(row.required)}")
    except CartridgeError as error:
        _fail(error)


@registry.command("remove")
@click.argument("name")
def registry_remove(name: str) -> None:
    """Stop pushing to replica NAME (its images stay where they are)."""
    try:
        with session_scope() as session:
            service.delete_registry(session, name)
    except CartridgeError as error:
        _fail(error)
    click.echo(f"registry {name} removed")


@registry.command("list")
@click.option(
    "--check", is_flag=True, help="Probe every replica now instead of showing the last check."
)
def registry_list(check: bool) -> None:
    """Replicas with their health and how many images each lacks."""
    with session_scope() as session:
        if check:
            service.check_health(session)
        counts = queries.missing_counts(session)
        rows = queries.list_registries(session)
        if not rows:
            click.echo("no replicas configured (builds use CARTRIDGE_REGISTRY_URL alone)")
            return
        click.echo(f"{'NAME':<16} {'URL':<28} {'ROLE':<9} {'HEALTH':<10} {'MISSING':>7}  CHECKED")
        for row in rows:
            health = "healthy" if row.healthy else "UNHEALTHY"
            checked = (
                row.last_checked_at.isoformat(timespec="seconds")
                if row.last_checked_at
                else "never"
            )
            click.echo(
                f"{row.name:<16} {row.url:<28} {_role(row.required):<9} {health:<10} "
                f"{counts.get(row.id, 0):>7}  {checked}"
            )
            if row.last_error and not row.healthy:
                click.echo(f"{'':<16} last error: {row.last_error}")


@registry.command("missing")
@click.argument("name")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
def registry_missing(name: str, limit: int) -> None:
    """Images replica NAME lacks, newest first."""
    try:
        with session_scope() as session:
            registry_row = service.get_registry(session, name)
            rows = queries.missing_images(session, registry_row.id, limit=limit)
            for image, presence in rows:
                reason = (presence.last_error if presence else None) or "never copied"
                click.echo(f"{image.name}:{image.tag} {image.manifest_digest}  ({reason})")
            if not rows:
                click.echo(f"{name} lacks no image")
    except CartridgeError as error:
        _fail(error)


@registry.command("gc")
@click.argument("name")
@click.option(
    "--config",
    "config",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The replica's Distribution config file (this command runs on the replica's host).",
)
@click.option(
    "--stop",
    default=None,
    help="Command that stops the replica, e.g. 'systemctl stop docker-registry'.",
)
@click.option("--start", default=None, help="Command that starts it again.")
def registry_gc(name: str, config: Path, stop: str | None, start: str | None) -> None:
    """Reclaim replica NAME's space: out of the push set and the proxy, stopped, garbage-collected
    (a dry run first), started, then back in service. Run it on one replica at a time."""
    try:
        collect_garbage(name, get_settings(), config=config, stop=stop, start=start, say=click.echo)
    except CartridgeError as error:
        _fail(error)


@registry.command("gc-done")
@click.argument("name")
def registry_gc_done(name: str) -> None:
    """Take replica NAME out of maintenance after a collection that stopped half-way."""
    try:
        leave_maintenance(name)
    except CartridgeError as error:
        _fail(error)
    click.echo(f"{name} is back in the push set and the proxy")


@click.command("proxy-config")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the config to this file instead of standard output.",
)
def proxy_config_command(output: Path | None) -> None:
    """Print the nginx config of the caching pull proxy, checked with `nginx -t`."""
    try:
        with session_scope() as session:
            text = proxy_config(session)
    except CartridgeError as error:
        _fail(error)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)


@click.group("proxy")
def proxy() -> None:
    """The caching pull proxy (nginx in front of the replicas)."""


@proxy.command("serve")
@click.option("--once", is_flag=True, help="Apply the current config once and exit.")
def proxy_serve(once: bool) -> None:
    """Run nginx with the generated config and reload it whenever the replicas change.

    Needs the database (it reads the replicas) and nginx; files go to CARTRIDGE_PROXY_RUNTIME_DIR
    and CARTRIDGE_PROXY_CACHE_PATH. A config nginx refuses is never loaded: the proxy keeps the
    previous one, and `GET /api/v1/proxies` shows the refusal."""
    settings = get_settings()
    supervisor = ProxySupervisor(settings)
    if once:
        result = supervisor.apply_once()
        if result.error:
            _fail(CartridgeError(result.error, code="proxy_config_not_loaded"))
        click.echo(f"pull proxy on {settings.proxy_host}: {settings.proxy_config_path}")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(
        f"pull proxy on {settings.proxy_host}, config {settings.proxy_config_path}", err=True
    )
    supervisor.run(stop)


def _role(required: bool) -> str:
    return "required" if required else "optional"


@registry.command("auth-config")
def registry_auth_config() -> None:
    """Prints the `auth:` section of a replica's config.yml for CARTRIDGE_REGISTRY_AUTH=token
    (generating the development key and certificate if there are none yet)."""
    settings = get_settings()
    if not settings.registry_auth_enabled:
        click.echo("registry auth is off: set CARTRIDGE_REGISTRY_AUTH=token first", err=True)
        sys.exit(1)
    click.echo(distribution_auth_section(settings), nl=False)
