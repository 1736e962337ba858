"""`cartridge registry ...`: the replicas every image is pushed to, their health and what each
lacks, through the API; and `registry gc`, which runs on a replica's host against the database (it
stops and starts the replica there). (`cartridge proxy-config` and `proxy serve`, in
app/cli/proxy.py, work without the API too.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from app.cli.api import ApiClient, api_command, print_json, table, when
from app.cli.errors import CommandError
from app.config import get_settings
from app.registries.gc import collect_garbage, leave_maintenance
from app.registry_auth.replica_config import distribution_auth_section

MISSING_PAGE = 100


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
@api_command
def registry_add(api: ApiClient, as_json: bool, name: str, url: str, optional: bool) -> None:
    """Add replica NAME at URL (host:port as Docker names it)."""
    row = api.post("/registries", {"name": name, "url": url, "required": not optional})
    if as_json:
        print_json(row)
        return
    click.echo(f"registry {row['name']} added ({row['url']}, {_role(row['required'])})")


@registry.command("set")
@click.argument("name")
@click.option("--url", default=None, help="New host:port.")
@click.option("--required/--optional", default=None, help="Whether builds wait for it.")
@api_command
def registry_set(
    api: ApiClient, as_json: bool, name: str, url: str | None, required: bool | None
) -> None:
    """Change replica NAME's URL or whether it is required."""
    changes = {
        key: value for key, value in (("url", url), ("required", required)) if value is not None
    }
    row = api.patch(f"/registries/{name}", changes)
    if as_json:
        print_json(row)
        return
    click.echo(f"registry {row['name']}: {row['url']}, {_role(row['required'])}")


@registry.command("remove")
@click.argument("name")
@api_command
def registry_remove(api: ApiClient, as_json: bool, name: str) -> None:
    """Stop pushing to replica NAME (its images stay where they are)."""
    api.delete(f"/registries/{name}")
    if as_json:
        print_json({"name": name, "removed": True})
        return
    click.echo(f"registry {name} removed")


@registry.command("list")
@click.option(
    "--check", is_flag=True, help="Probe every replica now instead of showing the last check."
)
@api_command
def registry_list(api: ApiClient, as_json: bool, check: bool) -> None:
    """Replicas with their health and how many images each lacks."""
    listing = api.post("/registries/check") if check else api.get("/registries")
    if as_json:
        print_json(listing)
        return
    rows = listing["items"]
    if not rows:
        click.echo("no replicas configured (builds use CARTRIDGE_REGISTRY_URL alone)")
        return
    lines = [
        [
            row["name"],
            row["url"],
            _role(row["required"]),
            "healthy" if row["healthy"] else "UNHEALTHY",
            str(row["missing_images"]),
            when(row["last_checked_at"]) if row["last_checked_at"] else "never",
        ]
        for row in rows
    ]
    click.echo(table(lines, ["NAME", "URL", "ROLE", "HEALTH", "MISSING", "CHECKED"]))
    for row in rows:
        if row["last_error"] and not row["healthy"]:
            click.echo(f"{row['name']}: last error: {row['last_error']}")


@registry.command("missing")
@click.argument("name")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@api_command
def registry_missing(api: ApiClient, as_json: bool, name: str, limit: int) -> None:
    """Images replica NAME lacks, newest first."""
    items: list[dict[str, Any]] = []
    cursor = None
    while len(items) < limit:
        params: dict[str, Any] = {"limit": min(MISSING_PAGE, limit - len(items))}
        if cursor:
            params["cursor"] = cursor
        page = api.get(f"/registries/{name}/missing", params)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    if as_json:
        print_json(items)
        return
    for item in items:
        reason = item["last_error"] or "never copied"
        click.echo(f"{item['name']}:{item['tag']} {item['manifest_digest']}  ({reason})")
    if not items:
        click.echo(f"{name} lacks no image")


# Garbage collection runs where the replica runs: it reads the replica's config file and stops and
# starts it with the host's commands, so it works on the database directly, like the operator
# commands in app/cli/main.py.


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
    collect_garbage(name, get_settings(), config=config, stop=stop, start=start, say=click.echo)


@registry.command("gc-done")
@click.argument("name")
def registry_gc_done(name: str) -> None:
    """Take replica NAME out of maintenance after a collection that stopped half-way."""
    leave_maintenance(name)
    click.echo(f"{name} is back in the push set and the proxy")


def _role(required: bool) -> str:
    return "required" if required else "optional"


@registry.command("auth-config")
def registry_auth_config() -> None:
    """Prints the `auth:` section of a replica's config.yml for CARTRIDGE_REGISTRY_AUTH=token
    (generating the development key and certificate if there are none yet)."""
    settings = get_settings()
    if not settings.registry_auth_enabled:
        raise CommandError(
            "Registry auth is off: set CARTRIDGE_REGISTRY_AUTH=token first.",
            code="registry_auth_off",
        )
    click.echo(distribution_auth_section(settings), nl=False)
