"""The `cartridge` command line: operators' and engineers' daily commands.

Two kinds of commands (README, "Command line"):
- through the HTTP API (app/cli/api.py), from any machine with a token: `repo`, `builds`,
  `registry`, each in a module of its own;
- on a control-plane host, against the database directly, defined here: the operator commands that
  must work when the API cannot help, before it runs (`db upgrade`, the first `token create`) or
  while it is down (`proxy-config`, which the pull proxy needs to start).
Every failure is printed the same way with a documented exit status (app/cli/errors.py).
"""

from __future__ import annotations

from pathlib import Path

import click

from app import migrate
from app.cli.builds import builds
from app.cli.errors import CommandGroup
from app.cli.registries import registry
from app.cli.repos import repo
from app.cli.statuses import statuses
from app.config import get_settings
from app.db import session_scope
from app.registries.proxy import proxy_config


@click.group(cls=CommandGroup)
def cli() -> None:
    """Cartridge: GitHub pushes become ready-to-run container images.

    \b
    Exit status: 0 done; 1 Cartridge refused or failed the request (the message
    names the error code); 2 the command line is wrong; 3 the API or the
    database could not be reached.
    """


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION."""
    migrate.upgrade(get_settings().resolved_database_url(), revision)
    click.echo(f"database at {revision}")


@cli.group()
def token() -> None:
    """API tokens (stored hashed; shown once)."""


@token.command("create")
@click.argument("name")
def token_create(name: str) -> None:
    """Create a write token called NAME and print it once."""
    from app.auth.service import create_token

    with session_scope() as session:
        row, raw = create_token(session, name)
        token_id = row.id
    click.echo(raw)
    click.echo(f"token {token_id} ({name}) created; it is not shown again", err=True)


@cli.command("proxy-config")
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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Run the HTTP API."""
    import uvicorn

    get_settings().check()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


cli.add_command(repo)
cli.add_command(builds)
builds.add_command(statuses)
cli.add_command(registry)

if __name__ == "__main__":
    cli()
