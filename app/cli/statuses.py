"""`cartridge builds statuses ID`: the commit statuses recorded for a build and their delivery."""

from __future__ import annotations

import json

import click

from app.db import session_scope
from app.github import repository
from app.github.schemas import BuildStatusesOut, StatusPostOut
from app.models import Build


@click.command("statuses")
@click.argument("build_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table.")
def statuses(build_id: int, as_json: bool) -> None:
    """Show the GitHub commit statuses of build BUILD_ID, oldest first."""
    with session_scope() as session:
        if session.get(Build, build_id) is None:
            raise click.ClickException(f"build {build_id} does not exist")
        posts = [
            StatusPostOut.model_validate(p) for p in repository.posts_for_build(session, build_id)
        ]
    if as_json:
        click.echo(
            json.dumps(
                BuildStatusesOut(build_id=build_id, items=posts).model_dump(mode="json"), indent=2
            )
        )
        return
    if not posts:
        click.echo(f"build {build_id}: no commit statuses recorded")
        return
    for post in posts:
        created = post.created_at.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(
            f"#{post.id} {created} attempt {post.attempt} {post.state:<7} "
            f"{post.description!r}: {_outcome(post)}"
        )


def _outcome(post: StatusPostOut) -> str:
    if post.delivery == "skipped":
        return f"skipped ({post.skip_reason})" if post.skip_reason else "skipped"
    if post.delivery == "queued" and post.next_try_at is not None:
        retry_at = post.next_try_at.strftime("%H:%M:%S")
        return f"queued, try {post.tries + 1} at {retry_at} (last: {post.last_error})"
    if post.delivery == "failed":
        return f"failed after {post.tries} tries ({post.last_error})"
    return post.delivery


def register(cli: click.Group) -> None:
    """Adds `statuses` to the `builds` group, creating the group if no other module has."""
    builds = cli.commands.get("builds")
    if not isinstance(builds, click.Group):
        builds = click.Group("builds", help="Builds.")
        cli.add_command(builds)
    builds.add_command(statuses)
