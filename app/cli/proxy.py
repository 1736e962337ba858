"""`cartridge proxy-config` and `cartridge proxy serve`: the caching pull proxy's nginx config and
the process that runs nginx with it. Both read the replicas from the database directly, so the
proxy starts and follows the replicas while the API is down (README, "Command line")."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from app.cli.errors import CommandError
from app.config import get_settings
from app.db import session_scope
from app.registries.proxy import proxy_config
from app.registries.proxy_supervisor import ProxySupervisor


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
    with session_scope() as session:
        text = proxy_config(session)
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
            raise CommandError(result.error, code="proxy_config_not_loaded")
        click.echo(f"pull proxy on {settings.proxy_host}: {settings.proxy_config_path}")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(
        f"pull proxy on {settings.proxy_host}, config {settings.proxy_config_path}", err=True
    )
    supervisor.run(stop)
