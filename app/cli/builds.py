"""`cartridge builds ...`: browse builds, read or follow their logs, retry and cancel them."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from app.cli.api import ApiClient, api_command, print_json, table, when
from app.cli.errors import CommandError

STATUSES = ["queued", "running", "succeeded", "failed", "errored", "cancelled"]
# A dropped stream is resumed from the last event this many times before giving up.
STREAM_RECONNECTS = 3


@click.group("builds")
def builds() -> None:
    """Builds: history, logs, retry and cancel."""


@builds.command("list")
@click.option("--repo", "repository", help="owner/name")
@click.option("--branch")
@click.option("--sha", help="A full SHA or a prefix of 7 or more characters.")
@click.option("--status", multiple=True, type=click.Choice(STATUSES), help="Repeatable.")
@click.option("--since", type=click.DateTime(), help="Queued at or after (UTC).")
@click.option("--until", type=click.DateTime(), help="Queued before (UTC).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--cursor", help="Continue a previous listing.")
@api_command
def builds_list(
    api: ApiClient,
    as_json: bool,
    status: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    **filters: Any,
) -> None:
    """Builds, newest first."""
    params: dict[str, Any] = {key: value for key, value in filters.items() if value is not None}
    if status:
        params["status"] = list(status)
    if since:
        params["since"] = since.isoformat()
    if until:
        params["until"] = until.isoformat()
    page = api.get("/builds", params)
    if as_json:
        print_json(page)
        return
    rows = [
        [
            str(item["id"]),
            item["repository"],
            item["sha"][:12],
            item["status"],
            str(item["attempt"]),
            ",".join(item["branches"]) or "-",
            when(item["queued_at"]),
            _duration(item),
        ]
        for item in page["items"]
    ]
    headers = ["ID", "REPOSITORY", "SHA", "STATUS", "TRY", "BRANCHES", "QUEUED", "TOOK"]
    click.echo(table(rows, headers))
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}", err=True)


@builds.command("show")
@click.argument("build_id", type=int)
@api_command
def builds_show(api: ApiClient, as_json: bool, build_id: int) -> None:
    """One build: status, pushes, image."""
    build = api.get(f"/builds/{build_id}")
    if as_json:
        print_json(build)
        return
    _print_build(build)


@builds.command("logs")
@click.argument("build_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Stream new output until the build ends.")
@click.option("--attempt", type=click.IntRange(min=1), help="Default: the latest.")
@api_command
def builds_logs(
    api: ApiClient, as_json: bool, build_id: int, follow: bool, attempt: int | None
) -> None:
    """Print a build's log (--follow: as it is written)."""
    if follow:
        _follow(api, build_id, attempt, as_json)
        return
    offset = 0
    while True:
        params: dict[str, Any] = {"offset": offset}
        if attempt:
            params["attempt"] = attempt
        page = api.get(f"/builds/{build_id}/log", params)
        if as_json:
            print_json(page)
        else:
            _write(page["content"])
        if page["complete"] or page["next_offset"] == offset:
            return
        offset = page["next_offset"]


def _follow(api: ApiClient, build_id: int, attempt: int | None, as_json: bool) -> None:
    params: dict[str, Any] = {"attempt": attempt} if attempt else {}
    last_event_id = None
    for reconnect in range(STREAM_RECONNECTS + 1):
        try:
            for event in api.events(f"/builds/{build_id}/log/stream", params, last_event_id):
                last_event_id = event.id or last_event_id
                if as_json:
                    print_json({"event": event.event, "data": event.data})
                elif event.event == "log":
                    _write(event.data["content"])
                elif event.event == "attempt":
                    click.echo(f"--- attempt {event.data['attempt']} ---", err=True)
                elif event.event == "end":
                    click.echo(f"build {build_id} {event.data['status']}", err=True)
                if event.event in ("end", "gone"):
                    return
        except CommandError:
            if last_event_id is None or reconnect == STREAM_RECONNECTS:
                raise
            click.echo("(stream interrupted; resuming)", err=True)
            continue
        if last_event_id is None:
            break
    raise CommandError("the log stream ended before the build did")


@builds.command("retry")
@click.argument("build_id", type=int)
@api_command
def builds_retry(api: ApiClient, as_json: bool, build_id: int) -> None:
    """Queue a new attempt of a failed, errored or cancelled build."""
    build = api.post(f"/builds/{build_id}/retry")
    if as_json:
        print_json(build)
        return
    click.echo(f"build {build['id']} {build['status']} (attempt {build['attempt']})")


@builds.command("cancel")
@click.argument("build_id", type=int)
@api_command
def builds_cancel(api: ApiClient, as_json: bool, build_id: int) -> None:
    """Cancel a queued or running build."""
    build = api.post(f"/builds/{build_id}/cancel")
    if as_json:
        print_json(build)
        return
    click.echo(f"build {build['id']} {build['status']}: {build['cancel_reason']}")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _duration(build: dict[str, Any]) -> str:
    if not build["started_at"] or not build["finished_at"]:
        return "-"
    started = datetime.fromisoformat(build["started_at"])
    seconds = int((datetime.fromisoformat(build["finished_at"]) - started).total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _print_build(build: dict[str, Any]) -> None:
    lines = [
        ("build", f"{build['id']} ({build['repository']})"),
        ("sha", build["sha"]),
        ("status", f"{build['status']} (attempt {build['attempt']})"),
        ("branches", ", ".join(build["branches"]) or "-"),
        ("host", build["build_host"] or "-"),
        ("queued", when(build["queued_at"])),
        ("started", when(build["started_at"])),
        ("finished", when(build["finished_at"])),
    ]
    if build["error"]:
        lines.append(("error", build["error"]))
    if build["cancel_reason"]:
        lines.append(("cancelled", build["cancel_reason"]))
    if build["superseded_by"]:
        newer = build["superseded_by"]
        lines.append(("superseded", f"by push {newer['push_id']} ({newer['sha'][:12]})"))
    image = build["image"]
    lines.append(("image", image["reference"] if image else "-"))
    if image:
        lines.extend((f"role {name}", command) for name, command in sorted(image["roles"].items()))
    for label, value in lines:
        click.echo(f"{label + ':':<12}{value}")
    if build["pushes"]:
        click.echo("")
        rows = [
            [
                str(push["id"]),
                push["branch"] or f"tag {push['tag']}",
                push["before"][:12],
                push["after"][:12],
                "yes" if push["forced"] else "",
                push["pusher"] or "-",
                when(push["received_at"]),
            ]
            for push in build["pushes"]
        ]
        headers = ["PUSH", "REF", "BEFORE", "AFTER", "FORCED", "PUSHER", "RECEIVED"]
        click.echo(table(rows, headers))
