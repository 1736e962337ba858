"""The `cartridge` command line: operators' and engineers' daily commands.

Two kinds of commands (README, "Command line"):
- through the HTTP API (app/cli/api.py), from any machine with a token: `repo`, `builds`,
  `registry`, `images pin|unpin`, each group in a module of its own;
- on a control-plane or replica host, against the database directly: the operator commands that
  must work when the API cannot help, before it runs (`db upgrade`, the first `token create`,
  defined here), while it is down (`proxy-config` and `proxy serve` in app/cli/proxy.py: the pull
  proxy starts and follows the replicas without it), or that do a worker's job on the host they
  run on (`images prune|deletions`, `registry gc`).
Every failure is printed the same way with a documented exit status (app/cli/errors.py).
"""

from __future__ import annotations

import click

from app import migrate
from app.cli.builds import builds
from app.cli.errors import CommandGroup
from app.cli.images import images_group
from app.cli.proxy import proxy, proxy_config_command
from app.cli.registries import registry
from app.cli.repos import repo
from app.cli.secrets import secrets
from app.cli.statuses import statuses
from app.cli.tokens import token
from app.config import get_settings
from app.db import session_scope
from app.registries.declared import sync_declared


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
    settings = get_settings()
    migrate.upgrade(settings.resolved_database_url(), revision)
    click.echo(f"database at {revision}")
    if revision == "head":
        with session_scope() as session:
            changed = sync_declared(session, settings)
        if changed:
            click.echo(f"declared registries registered or updated: {', '.join(changed)}")


@db.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
def db_prune(dry_run: bool) -> None:
    """Delete what the retention policy lets go (CARTRIDGE_ROW_RETENTION_*), in small batches."""
    from app.db import get_session_factory
    from app.row_retention.service import RetentionPolicy, cutoff_description, prune

    policy = RetentionPolicy.of(get_settings())
    report = prune(get_session_factory(), policy, dry_run=dry_run)
    rules = cutoff_description(policy)
    verb = "would delete" if dry_run else "deleted"
    for kind, count in report.counts.items():
        rule = rules.get(kind.removesuffix("_chunks"), "")
        click.echo(f"{kind}: {verb} {count}" + (f" ({rule})" if rule and kind in rules else ""))
    if report.skipped_batches:
        click.echo(f"{report.skipped_batches} batches met a lock and are left for the next run")


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
cli.add_command(token)
cli.add_command(secrets)
cli.add_command(builds)
builds.add_command(statuses)
cli.add_command(registry)
cli.add_command(proxy_config_command)
cli.add_command(proxy)
cli.add_command(images_group)

if __name__ == "__main__":
    cli()
