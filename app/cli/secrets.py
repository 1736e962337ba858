"""`cartridge secrets ...`: the keys that encrypt stored secrets."""

from __future__ import annotations

import click


@click.group("secrets")
def secrets() -> None:
    """Stored secrets (encrypted with CARTRIDGE_SECRET_KEYS)."""


@secrets.command("generate-key")
def generate_key() -> None:
    """Print a new key for CARTRIDGE_SECRET_KEYS."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())


@secrets.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored secret with the first key of CARTRIDGE_SECRET_KEYS. Run it after
    putting a new key first; remove the old key once it has run."""
    from app.db import get_session_factory
    from app.encryption import UndecryptableSecret
    from app.secret_rotation import rotate as rotate_secrets

    try:
        with get_session_factory()() as session:
            counts = rotate_secrets(session)
    except UndecryptableSecret as exc:
        raise click.ClickException(exc.message) from exc
    for column, count in counts.items():
        click.echo(f"{column}: {count} re-encrypted with the first key")
