"""The GitHub client against the fake GitHub: requests GitHub accepts, answers classified the
way delivery needs them, and the GitHub App installation token flow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import Settings
from app.github.auth import AppInstallationAuth, TokenAuth
from app.github.client import CommitStatus, GitHubClient, client_from_settings
from app.github.errors import PermanentGitHubError, RateLimited, TransientGitHubError
from tests.support.fake_github import DEFAULT_TOKEN, FakeGitHub

SHA = "0123456789abcdef0123456789abcdef01234567"
STATUS = CommitStatus("pending", "cartridge/build", "Queued", "https://c.example.com/builds/1")


def _pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def app_keys() -> tuple[str, str]:
    return _pem_pair()


@pytest.fixture
def client(fake_github: FakeGitHub) -> Iterator[GitHubClient]:
    github = GitHubClient(fake_github.url, TokenAuth(DEFAULT_TOKEN), timeout_seconds=0.5)
    yield github
    github.close()


def test_a_status_is_posted_as_github_expects(
    client: GitHubClient, fake_github: FakeGitHub
) -> None:
    client.create_status("octo/app", SHA, STATUS)
    [received] = fake_github.statuses
    assert (received.owner, received.repo, received.sha) == ("octo", "app", SHA)
    assert (received.state, received.context, received.description, received.target_url) == (
        "pending",
        "cartridge/build",
        "Queued",
        "https://c.example.com/builds/1",
    )
    assert received.authorization == f"Bearer {DEFAULT_TOKEN}"
    assert fake_github.rejections == []


def test_an_enterprise_api_url_with_a_path_prefix() -> None:
    with FakeGitHub(prefix="/api/v3") as enterprise:
        github = GitHubClient(enterprise.url + "/", TokenAuth(DEFAULT_TOKEN))
        github.create_status("octo/app", SHA, STATUS)
        github.close()
        assert [r.path for r in enterprise.requests] == [f"/api/v3/repos/octo/app/statuses/{SHA}"]
        assert len(enterprise.statuses) == 1


def test_the_fake_refuses_what_github_refuses(
    client: GitHubClient, fake_github: FakeGitHub
) -> None:
    too_long = CommitStatus("pending", "cartridge/build", "x" * 141, None)
    with pytest.raises(PermanentGitHubError) as long_error:
        client.create_status("octo/app", SHA, too_long)
    assert long_error.value.status_code == 422
    assert "description is too long (maximum is 140 characters)" in long_error.value.reason

    unknown_state = CommitStatus("running", "cartridge/build", "Queued", None)
    with pytest.raises(PermanentGitHubError) as state_error:
        client.create_status("octo/app", SHA, unknown_state)
    assert state_error.value.status_code == 422

    wrong_token = GitHubClient(fake_github.url, TokenAuth("ghp_wrong"))
    with pytest.raises(PermanentGitHubError) as auth_error:
        wrong_token.create_status("octo/app", SHA, STATUS)
    wrong_token.close()
    assert auth_error.value.status_code == 401
    assert fake_github.statuses == []
    assert len(fake_github.rejections) == 3


@pytest.mark.parametrize("code", [500, 502, 503])
def test_server_errors_are_transient(
    client: GitHubClient, fake_github: FakeGitHub, code: int
) -> None:
    fake_github.fail_next(code)
    with pytest.raises(TransientGitHubError) as error:
        client.create_status("octo/app", SHA, STATUS)
    assert error.value.status_code == code
    client.create_status("octo/app", SHA, STATUS)
    assert len(fake_github.statuses) == 1


def test_a_hanging_github_is_a_transient_timeout(
    client: GitHubClient, fake_github: FakeGitHub
) -> None:
    fake_github.hang_next(5)
    with pytest.raises(TransientGitHubError) as error:
        client.create_status("octo/app", SHA, STATUS)
    assert "timed out" in error.value.reason
    assert error.value.status_code is None


def test_a_primary_rate_limit_waits_for_the_reset(
    client: GitHubClient, fake_github: FakeGitHub
) -> None:
    reset = fake_github.rate_limit_next(reset_in=120)
    with pytest.raises(RateLimited) as error:
        client.create_status("octo/app", SHA, STATUS)
    assert error.value.status_code == 403
    assert error.value.retry_at == reset + 1
    assert "API rate limit exceeded" in error.value.reason


def test_a_secondary_rate_limit_waits_for_retry_after(
    client: GitHubClient, fake_github: FakeGitHub
) -> None:
    fake_github.secondary_rate_limit_next(retry_after=90)
    before = time.time()
    with pytest.raises(RateLimited) as error:
        client.create_status("octo/app", SHA, STATUS)
    assert error.value.status_code == 429
    assert before + 90 <= error.value.retry_at <= time.time() + 90


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (401, "Bad credentials"),
        (403, "Resource not accessible by integration"),
        (404, "Not Found"),
        (422, "Validation Failed"),
    ],
)
def test_refusals_are_permanent_and_keep_githubs_reason(
    client: GitHubClient, fake_github: FakeGitHub, code: int, message: str
) -> None:
    fake_github.fail_next(code, message=message)
    with pytest.raises(PermanentGitHubError) as error:
        client.create_status("octo/app", SHA, STATUS)
    assert error.value.status_code == code
    assert error.value.reason == f"{code} {message}"


def _app_fake(public_key: str, **options: float) -> FakeGitHub:
    return FakeGitHub(
        token=None, app_id="4242", installation_id="77", app_public_key=public_key, **options
    )


def _app_client(fake: FakeGitHub, private_key: str, refresh: float = 300) -> GitHubClient:
    auth = AppInstallationAuth("4242", "77", private_key, refresh_before_expiry_seconds=refresh)
    return GitHubClient(fake.url, auth)


def test_an_app_installation_token_is_fetched_once_and_reused(
    app_keys: tuple[str, str],
) -> None:
    private, public = app_keys
    with _app_fake(public) as fake:
        github = _app_client(fake, private)
        for _ in range(3):
            github.create_status("octo/app", SHA, STATUS)
        github.close()
        assert fake.token_requests == 1
        [token] = fake.issued_tokens
        assert {s.authorization for s in fake.statuses} == {f"Bearer {token}"}
        assert fake.rejections == []


def test_an_app_token_is_replaced_before_it_expires(app_keys: tuple[str, str]) -> None:
    private, public = app_keys
    # Each token lives 63 s and is replaced 60 s before it expires: it is good for two to three
    # seconds (GitHub, and the fake, give expires_at in whole seconds, cutting up to one off).
    with _app_fake(public, token_lifetime_seconds=63) as fake:
        github = _app_client(fake, private, refresh=60)
        github.create_status("octo/app", SHA, STATUS)
        github.create_status("octo/app", SHA, STATUS)
        assert fake.token_requests == 1
        time.sleep(3.2)
        github.create_status("octo/app", SHA, STATUS)
        github.close()
        assert fake.token_requests == 2
        first, second = fake.issued_tokens
        assert [s.authorization for s in fake.statuses] == [
            f"Bearer {first}",
            f"Bearer {first}",
            f"Bearer {second}",
        ]


def test_a_revoked_app_token_is_replaced_once(app_keys: tuple[str, str]) -> None:
    private, public = app_keys
    with _app_fake(public) as fake:
        github = _app_client(fake, private)
        github.create_status("octo/app", SHA, STATUS)
        fake.expire_tokens()
        github.create_status("octo/app", SHA, STATUS)
        github.close()
        assert fake.token_requests == 2
        assert len(fake.statuses) == 2


def test_an_app_jwt_signed_with_another_key_is_refused(app_keys: tuple[str, str]) -> None:
    _, public = app_keys
    other_private, _ = _pem_pair()
    with _app_fake(public) as fake:
        github = _app_client(fake, other_private)
        with pytest.raises(PermanentGitHubError) as error:
            github.create_status("octo/app", SHA, STATUS)
        github.close()
        assert error.value.status_code == 401
        assert error.value.reason.startswith("installation token: 401")
        assert fake.statuses == []


def test_settings_with_an_app_key_file_use_the_app(
    app_keys: tuple[str, str], tmp_path: Path
) -> None:
    private, public = app_keys
    key_file = tmp_path / "app.pem"
    key_file.write_text(private)
    with _app_fake(public) as fake:
        settings = Settings(
            github_api_url=fake.url,
            github_app_id="4242",
            github_app_installation_id="77",
            github_app_private_key_path=key_file,
        )
        assert settings.github_statuses_enabled
        github = client_from_settings(settings)
        github.create_status("octo/app", SHA, STATUS)
        github.close()
        assert fake.token_requests == 1
        assert len(fake.statuses) == 1


def test_an_unusable_app_key_is_a_permanent_error_that_does_not_show_the_key(
    app_keys: tuple[str, str], tmp_path: Path
) -> None:
    _, public = app_keys
    with _app_fake(public) as fake:
        github = _app_client(
            fake, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----"
        )
        with pytest.raises(PermanentGitHubError) as error:
            github.create_status("octo/app", SHA, STATUS)
        github.close()
        assert "not a usable RSA key" in error.value.reason
        assert "c2VjcmV0" not in error.value.reason
        missing = Settings(
            github_api_url=fake.url,
            github_app_id="4242",
            github_app_installation_id="77",
            github_app_private_key_path=tmp_path / "missing.pem",
        )
        with pytest.raises(PermanentGitHubError, match="cannot read the GitHub App private key"):
            client_from_settings(missing)
        assert fake.token_requests == 0
