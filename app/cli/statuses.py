"""`cartridge builds statuses ID`: the commit statuses recorded for a build, and their sending."""

from __future__ import annotations

from typing import Any

import click

from app.cli.api import ApiClient, api_command, print_json, table, when


@click.command("statuses")
@click.argument("build_id", type=int)
@api_command
def statuses(api: ApiClient, as_json: bool, build_id: int) -> None:
    """The GitHub commit statuses of a build, oldest first, and what became of each."""
    history = api.get(f"/builds/{build_id}/statuses")
    if as_json:
        print_json(history)
        return
    if not history["items"]:
        click.echo(f"build {build_id}: no commit statuses recorded")
        return
    rows = [
        [
            str(post["id"]),
            when(post["created_at"]),
            str(post["attempt"]),
            post["state"],
            post["description"],
            _outcome(post),
        ]
        for post in history["items"]
    ]
    click.echo(table(rows, ["ID", "RECORDED", "TRY", "STATE", "DESCRIPTION", "SENT"]))


def _outcome(post: dict[str, Any]) -> str:
    send_state: str = post["send_state"]
    if send_state == "skipped" and post["skip_reason"]:
        return f"skipped: {post['skip_reason']}"
    if send_state == "queued" and post["next_try_at"]:
        return (
            f"queued, try {post['tries'] + 1} at {when(post['next_try_at'])}: {post['last_error']}"
        )
    if send_state == "failed":
        return f"failed after {post['tries']} tries: {post['last_error']}"
    return send_state
