"""`cartridge repo ...`: register and list repositories through the API."""

from __future__ import annotations

from typing import Any

import click

from app.build_limits import LIMIT_NAMES
from app.cli.api import ApiClient, api_command, print_json, table, when
from app.sizes import format_size


@click.group("repo")
def repo() -> None:
    """Repositories Cartridge builds."""


@repo.command("add")
@click.argument("full_name")
@click.option("--clone-url", help="Default: https://github.com/FULL_NAME.git")
@click.option("--default-branch", default="main", show_default=True)
@click.option("--image-name", help="Default: the full name, lowercased, '/' as '-'.")
@click.option(
    "--webhook-secret",
    envvar="CARTRIDGE_REPO_WEBHOOK_SECRET",
    help="This repository's webhook secret (or CARTRIDGE_REPO_WEBHOOK_SECRET).",
)
@click.option("--branch-filter", "branch_filters", multiple=True, help="fnmatch; repeatable.")
@click.option("--build-tags/--no-build-tags", default=False, show_default=True)
@click.option("--base-image", help="Default: the installation's base image.")
@click.option("--cancel-superseded/--keep-superseded", default=True, show_default=True)
@click.option(
    "--protected-branch",
    "protected_branches",
    multiple=True,
    help="Never cancelled when superseded; repeatable. Default: the default branch.",
)
@api_command
def repo_add(api: ApiClient, as_json: bool, full_name: str, **options: Any) -> None:
    """Register FULL_NAME (owner/name)."""
    body: dict[str, Any] = {"full_name": full_name}
    for key, value in options.items():
        if isinstance(value, tuple):
            if value or key == "branch_filters":
                body[key] = list(value)
        elif value is not None:
            body[key] = value
    created = api.post("/repos", body)
    if as_json:
        print_json(created)
        return
    click.echo(f"registered {created['full_name']} (image {created['image_name']})")


@repo.command("list")
@api_command
def repo_list(api: ApiClient, as_json: bool) -> None:
    """Every registered repository."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.get("/repos", {"cursor": cursor} if cursor else None)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    if as_json:
        print_json(items)
        return
    rows = [
        [
            item["full_name"],
            item["default_branch"],
            item["image_name"],
            "yes" if item["has_webhook_secret"] else "global",
            ",".join(item["branch_filters"]) or "*",
            when(item["created_at"]),
        ]
        for item in items
    ]
    click.echo(table(rows, ["REPOSITORY", "DEFAULT", "IMAGE", "SECRET", "BRANCHES", "CREATED"]))


@repo.command("limits")
@click.argument("full_name")
@click.option("--memory", help="e.g. 4g (bytes, or Docker's binary units).")
@click.option("--swap", help="Swap beyond the memory, e.g. 1g; 0 for none.")
@click.option("--cpus", type=float, help="CPU time in CPUs, e.g. 1.5.")
@click.option("--pids", type=int, help="Processes and threads at once.")
@click.option("--disk", help="What each build step may write, e.g. 20g.")
@click.option(
    "--reset",
    "reset",
    multiple=True,
    type=click.Choice(LIMIT_NAMES),
    help="Return a limit to the installation's setting; repeatable.",
)
@api_command
def repo_limits(
    api: ApiClient, as_json: bool, full_name: str, reset: tuple[str, ...], **values: Any
) -> None:
    """Show FULL_NAME's own build limits, or change the ones given."""
    changes: dict[str, Any] = {key: value for key, value in values.items() if value is not None}
    changes.update(dict.fromkeys(reset))
    if changes:
        repository = api.patch(f"/repos/{full_name}", {"build_limits": changes})
    else:
        repository = api.get(f"/repos/{full_name}")
    limits = repository["build_limits"]
    if as_json:
        print_json(limits)
        return
    for name in LIMIT_NAMES:
        value = limits[name]
        if value is None:
            shown = f"the installation's (CARTRIDGE_BUILD_{name.upper()})"
        elif name in ("memory", "swap", "disk"):
            shown = format_size(value)
        else:
            shown = f"{value:g}"
        click.echo(f"{name + ':':<8} {shown}")


@repo.command("latest-green")
@click.argument("full_name")
@click.argument("branch")
@api_command
def repo_latest_green(api: ApiClient, as_json: bool, full_name: str, branch: str) -> None:
    """The newest green commit of BRANCH and its image reference."""
    green = api.get(f"/repos/{full_name}/branches/{branch}/latest-green")
    if as_json:
        print_json(green)
        return
    image = green["image"]
    click.echo(f"sha:       {green['sha']}")
    click.echo(f"build:     {green['build_id']} (push {green['push_id']})")
    click.echo(f"finished:  {when(green['finished_at'])}")
    click.echo(f"image:     {image['reference'] if image else '-'}")
    for role, command in sorted(green["roles"].items()):
        click.echo(f"role {role}: {command}")


@repo.command("sync")
@click.argument("full_name")
@api_command
def repo_sync(api: ApiClient, as_json: bool, full_name: str) -> None:
    """Compare FULL_NAME's branch heads with GitHub's now; build what no webhook told of."""
    found = api.post(f"/repos/{full_name}/sync", {})
    if as_json:
        print_json(found)
        return
    click.echo(
        f"{found['repository']}: {found['outcome']} ({found['branches']} branches, "
        f"{found['requests']} requests to GitHub)"
    )
    for push in found["recovered"]:
        if push["deleted"]:
            click.echo(f"  {push['branch']}: deleted (was {push['before'][:7]})")
        else:
            build = f"build {push['build_id']} {push['build_status']}"
            click.echo(f"  {push['branch']}: {push['before'][:7]} -> {push['after'][:7]}, {build}")
    if found["adopted"]:
        click.echo(f"  {found['adopted']} branch heads taken as known (first pass, not built)")
    for branch in found["raced"]:
        click.echo(f"  {branch}: moved by a webhook meanwhile; checked again next pass")
