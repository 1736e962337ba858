"""Webhook secrets are encrypted at rest, keys rotate, and a database dump holds no secret in the
clear."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from app import migrate
from app.cli.main import cli
from app.config import ConfigurationError, Settings, get_settings
from app.encryption import SecretBox, UndecryptableSecret, keys_of
from app.engine import build_engine
from tests.conftest import ADMIN_DSN, TEST_DATABASE, _admin, _database_url
from tests.support.github import push_payload
from tests.webhooks.conftest import Deliver

REPO_SECRET = "repo-secret-" + uuid.uuid4().hex
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
# The last revision that stored webhook secrets in the clear.
BEFORE_ENCRYPTION = "0010"


@pytest.fixture
def use_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def use(value: str) -> None:
        monkeypatch.setenv("CARTRIDGE_SECRET_KEYS", value)
        get_settings.cache_clear()

    yield use
    monkeypatch.delenv("CARTRIDGE_SECRET_KEYS", raising=False)
    get_settings.cache_clear()


def _stored(session: Session, full_name: str) -> str:
    return str(
        session.execute(
            text("SELECT webhook_secret FROM repositories WHERE full_name = :name"),
            {"name": full_name},
        ).scalar_one()
    )


def _dump(database: str) -> str:
    dsn = f"{ADMIN_DSN.rsplit('/', 1)[0]}/{database}"
    return subprocess.run(
        ["pg_dump", "--no-owner", dsn], check=True, capture_output=True, text=True
    ).stdout


def test_a_database_dump_holds_no_secret_in_the_clear(
    client: TestClient, auth: dict[str, str], admin_token: str, deliver: Deliver
) -> None:
    created = client.post(
        "/api/v1/repos",
        json={"full_name": "octo/app", "webhook_secret": REPO_SECRET},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    assert deliver("push", push_payload("octo/app"), secret=REPO_SECRET).status_code == 200

    dump = _dump(TEST_DATABASE)
    assert "octo/app" in dump  # the dump does hold the data...
    assert "gAAAAA" in dump  # ...with the secret as a Fernet token
    for secret in (REPO_SECRET, admin_token, admin_token[4:]):
        assert secret not in dump


def test_keys_rotate_the_first_one_encrypts_and_old_ones_still_decrypt(
    client: TestClient,
    auth: dict[str, str],
    deliver: Deliver,
    session: Session,
    use_keys,  # type: ignore[no-untyped-def]
) -> None:
    use_keys(KEY_A)
    client.post(
        "/api/v1/repos", json={"full_name": "octo/app", "webhook_secret": REPO_SECRET}, headers=auth
    )
    written_with_a = _stored(session, "octo/app")
    assert SecretBox([KEY_A.encode()]).decrypt(written_with_a) == REPO_SECRET

    use_keys(f"{KEY_B},{KEY_A}")  # a new key first; the old one still reads
    assert deliver("push", push_payload("octo/app"), secret=REPO_SECRET).status_code == 200
    rotated = CliRunner().invoke(cli, ["secrets", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert "repositories.webhook_secret: 1 re-encrypted" in rotated.stdout
    session.rollback()
    written_with_b = _stored(session, "octo/app")
    assert written_with_b != written_with_a
    assert SecretBox([KEY_B.encode()]).decrypt(written_with_b) == REPO_SECRET
    with pytest.raises(UndecryptableSecret):
        SecretBox([KEY_A.encode()]).decrypt(written_with_b)

    use_keys(KEY_B)  # the old key is gone: the secret still verifies
    second = push_payload("octo/app", after="b" * 40)
    assert deliver("push", second, secret=REPO_SECRET).json()["outcome"] == "accepted"

    use_keys(KEY_A)  # a key that never wrote it: a clear error, never a wrong answer
    failed = CliRunner().invoke(cli, ["secrets", "rotate"])
    assert failed.exit_code == 1
    assert "repositories.webhook_secret of row" in failed.stderr
    assert "CARTRIDGE_SECRET_KEYS" in failed.stderr
    refused = deliver("push", push_payload("octo/app", after="c" * 40), secret=REPO_SECRET)
    assert refused.status_code == 500
    assert refused.json()["error"]["code"] == "secret_undecryptable"
    assert REPO_SECRET not in refused.text


def test_keys_are_checked_and_generated_outside_production(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Fernet key"):
        keys_of(Settings(secret_keys="not-a-fernet-key"))
    keys = keys_of(Settings(state_dir=tmp_path))
    assert keys == keys_of(Settings(state_dir=tmp_path))  # generated once, then reused
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert keys_of(Settings(state_dir=tmp_path, secret_keys=f"{KEY_A}, {KEY_B}")) == [
        KEY_A.encode(),
        KEY_B.encode(),
    ]
    with pytest.raises(ConfigurationError, match="CARTRIDGE_SECRET_KEYS"):
        keys_of(Settings(environment="production", state_dir=tmp_path / "prod"))
    assert not (tmp_path / "prod" / "secret.key").exists()
    problems = Settings(environment="production").production_problems()
    assert any("CARTRIDGE_SECRET_KEYS" in problem for problem in problems)
    generated = CliRunner().invoke(cli, ["secrets", "generate-key"])
    Fernet(generated.stdout.strip())


def test_the_migration_encrypts_secrets_stored_in_the_clear(
    database_url: str,
    use_keys,  # type: ignore[no-untyped-def]
) -> None:
    use_keys(KEY_A)
    name = f"cartridge_mig_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    engine = build_engine(url)
    try:
        migrate.upgrade(url, BEFORE_ENCRYPTION)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO repositories (full_name, clone_url, default_branch, image_name,"
                    " webhook_secret, branch_filters, build_tags, cancel_superseded,"
                    " created_at, updated_at) VALUES ('octo/old', 'https://x', 'main', 'old',"
                    " :secret, '[]', false, true, now(), now())"
                ),
                {"secret": REPO_SECRET},
            )
        migrate.upgrade(url)
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT webhook_secret FROM repositories")).scalar()
        assert stored != REPO_SECRET
        assert SecretBox([KEY_A.encode()]).decrypt(str(stored)) == REPO_SECRET
        assert REPO_SECRET not in _dump(name)
        migrate.downgrade(url, BEFORE_ENCRYPTION)
        with engine.connect() as connection:
            back = connection.execute(text("SELECT webhook_secret FROM repositories")).scalar()
        assert back == REPO_SECRET
    finally:
        engine.dispose()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
