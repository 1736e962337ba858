"""`cartridge images ...`: retention of built images. `pin` and `unpin` go through the API;
`prune` and `deletions` are operator commands on a control-plane host: they do the retention job's
work there, against the database directly (README, "Command line")."""

from __future__ import annotations

from typing import Any

import click

from app.cli.api import ApiClient, api_command, print_json
from app.config import get_settings
from app.db import session_scope
from app.retention.queries import unsettled_deletions
from app.retention.service import apply, plan


@click.group("images")
def images_group() -> None:
    """Built images and their retention."""


@images_group.command("prune")
@click.option("--dry-run", is_flag=True, help="Print what would go and why the rest stays.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Delete at most this many.")
@click.option("--repo", "repository", default=None, help="Only this repository (owner/name).")
def images_prune(dry_run: bool, limit: int | None, repository: str | None) -> None:
    """Apply the retention policy: every image no rule keeps is deleted from every replica, by
    digest (the periodic job does the same every CARTRIDGE_RETENTION_INTERVAL_SECONDS)."""
    settings = get_settings()
    with session_scope() as session:
        if dry_run:
            going = 0
            for repository_plan in plan(session, settings, repository=repository):
                for verdict in repository_plan.verdicts:
                    image = verdict.image
                    label = f"{repository_plan.repository} {image.tag[:12]} {image.manifest_digest}"
                    if verdict.kept:
                        click.echo(f"keep   {label}  ({'; '.join(verdict.kept_by)})")
                    elif limit is None or going < limit:
                        going += 1
                        click.echo(f"delete {label}")
            click.echo(f"{going} image(s) would be deleted", err=True)
            return
        deleting = apply(
            session, settings, limit=limit or settings.retention_batch_size, repository=repository
        )
    click.echo(f"{len(deleting)} image(s) marked for deletion; replicas delete them by digest")


@images_group.command("deletions")
@click.option("--all", "everything", is_flag=True, help="Done ones too.")
def images_deletions(everything: bool) -> None:
    """Deletions of images from replicas that are not done: queued, refused (deletes disabled on
    the replica) or failed (tries used up)."""
    with session_scope() as session:
        for row in unsettled_deletions(session, include_done=everything):
            when = row.requested_at.isoformat(timespec="seconds")
            note = f"  ({row.last_error})" if row.last_error else ""
            click.echo(f"{row.state} {row.registry_name} {row.manifest_digest} {when}{note}")


@images_group.command("pin")
@click.argument("digest")
@api_command
def images_pin(api: ApiClient, as_json: bool, digest: str) -> None:
    """Keep image DIGEST whatever retention's other rules say."""
    image = api.put(f"/images/{digest}/pin")
    _print_pinned(image, as_json)


@images_group.command("unpin")
@click.argument("digest")
@api_command
def images_unpin(api: ApiClient, as_json: bool, digest: str) -> None:
    """Let retention's rules decide about image DIGEST again."""
    image = api.delete(f"/images/{digest}/pin")
    _print_pinned(image, as_json)


def _print_pinned(image: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(image)
        return
    click.echo(f"{image['digest']} {'pinned' if image['pinned'] else 'unpinned'}")
