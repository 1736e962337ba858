"""The `cartridge` command line: operators' and engineers' daily commands."""

from __future__ import annotations

import click

from app import migrate
from app.cli.builds import builds
from app.cli.images import images_group
from app.cli.registries import proxy, proxy_config_command, registry
from app.cli.repos import repo
from app.cli.statuses import statuses
from app.config import get_settings
from app.db import session_scope
from app.registries.declared import sync_declared


@click.group()
def cli() -> None:
    """Cartridge: GitHub pushes become ready-to-run container images."""


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION."""
    settings = get_settings()
    migrate.upgrade(settings.resolved_database_url(), revision)
    click.echo(f"database at {revision}")
    if revision == "head":
        with session_scope() as session:
            changed = sync_declared(session, settings)
        if changed:
            click.echo(f"declared registries registered or updated: {', '.join(changed)}")


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
cli.add_command(proxy_config_command)
cli.add_command(proxy)
cli.add_command(images_group)

if __name__ == "__main__":
    cli()
