"""Secrets at rest: stored credentials are encrypted with Fernet (AES-128-CBC and an HMAC-SHA256,
from `cryptography`) under keys from the settings.

`CARTRIDGE_SECRET_KEYS` holds one or more Fernet keys, comma-separated. The first one encrypts;
every one decrypts, so a new key is rolled out by putting it first, running
`cartridge secrets rotate` (which re-encrypts every stored secret with it), then removing the old
key. Without the setting, outside production, a key is generated once in
`$CARTRIDGE_STATE_DIR/secret.key` (mode 0600) so a single node needs no configuration.

Columns hold secrets through `EncryptedText`: the model attribute is the clear value, the
database only ever sees the token.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text, TypeDecorator

from app.config import ConfigurationError, Settings, get_settings
from app.errors import CartridgeError

KEY_FILE_NAME = "secret.key"


class UndecryptableSecret(CartridgeError):
    """A stored secret that none of the configured keys opens: the installation's keys are
    wrong, an operator's problem (500), never the client's."""

    status_code = 500
    code = "secret_undecryptable"


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, clear: str) -> str:
        return self._fernet.encrypt(clear.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise UndecryptableSecret(
                "A stored secret cannot be decrypted with any key in CARTRIDGE_SECRET_KEYS "
                "(was the key that wrote it removed before `cartridge secrets rotate` ran?)"
            ) from exc

    def rotate(self, token: str) -> str:
        """The same secret encrypted with the first key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise UndecryptableSecret(
                "A stored secret cannot be decrypted with any key in CARTRIDGE_SECRET_KEYS, so "
                "it cannot be re-encrypted: put the key that wrote it back in the list"
            ) from exc


def parse_keys(value: str) -> list[bytes]:
    keys = [part.strip().encode() for part in value.split(",") if part.strip()]
    for key in keys:
        Fernet(key)  # raises ValueError for anything that is not a Fernet key
    return keys


def _key_file(state_dir: Path) -> list[bytes]:
    path = state_dir / KEY_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: of two processes starting at once, one writes the key, both read it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as file:
                file.write(Fernet.generate_key())
    return parse_keys(path.read_text())


def keys_of(settings: Settings) -> list[bytes]:
    if settings.secret_keys is not None and settings.secret_keys.get_secret_value().strip():
        return parse_keys(settings.secret_keys.get_secret_value())
    if settings.environment == "production":
        # Never a key file that one host has and the others do not.
        raise ConfigurationError("CARTRIDGE_SECRET_KEYS is not set; stored secrets need it")
    return _key_file(settings.state_dir)


@lru_cache
def _box(keys: tuple[bytes, ...]) -> SecretBox:
    return SecretBox(list(keys))


def secret_box(settings: Settings | None = None) -> SecretBox:
    return _box(tuple(keys_of(settings or get_settings())))


class EncryptedText(TypeDecorator[str]):
    """A secret column: encrypted on the way in, decrypted on the way out."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else secret_box().encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else secret_box().decrypt(value)
