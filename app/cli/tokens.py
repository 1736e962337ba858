"""`cartridge token ...`: create, list and revoke API tokens. These run against the database
directly (like `cartridge db`), so an operator can create the first admin token, or revoke a
leaked one, without a token."""

from __future__ import annotations

from datetime import timedelta

import click

from app.auth.schemas import TokenOut
from app.cli.api import print_json, table
from app.db import session_scope
from app.models import TokenScope
from app.models.base import utcnow


@click.group("token")
def token() -> None:
    """API tokens (stored hashed; the token itself is shown once)."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice([scope.value for scope in TokenScope]),
    default=TokenScope.WRITE.value,
    show_default=True,
    help="read: reads; write: also retry, cancel, sync; admin: also repositories, registries, "
    "tokens.",
)
@click.option("--expires-in-days", type=click.IntRange(min=1, max=3650), help="Default: never.")
def token_create(name: str, scope: str, expires_in_days: int | None) -> None:
    """Create a token called NAME and print it once."""
    from app.auth.service import create_token

    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    with session_scope() as session:
        row, raw = create_token(session, name, TokenScope(scope), expires_at=expires_at)
        token_id = row.id
    click.echo(raw)
    until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    click.echo(
        f"token {token_id} ({name}, {scope}{until}) created; it is not shown again", err=True
    )


def _when(moment: object) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


@token.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Also revoked tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(include_revoked: bool, as_json: bool) -> None:
    """Tokens, newest first (never the tokens themselves: only their first characters)."""
    from app.auth.service import list_tokens

    with session_scope() as session:
        tokens = [TokenOut.of(row) for row in list_tokens(session, include_revoked=include_revoked)]
    if as_json:
        print_json([item.model_dump(mode="json") for item in tokens])
        return
    rows = [
        [
            str(item.id),
            item.name,
            item.scope.value,
            item.prefix + "…",
            _when(item.created_at),
            _when(item.expires_at),
            _when(item.last_used_at),
            "revoked" if item.revoked_at else ("active" if item.active else "expired"),
        ]
        for item in tokens
    ]
    headers = ["ID", "NAME", "SCOPE", "PREFIX", "CREATED", "EXPIRES", "LAST USED", "STATE"]
    click.echo(table(rows, headers))


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID: the next request that presents it is refused."""
    from app.auth.service import revoke_token
    from app.errors import NotFound

    try:
        with session_scope() as session:
            row = revoke_token(session, token_id)
            name = row.name
    except NotFound as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"token {token_id} ({name}) revoked")
