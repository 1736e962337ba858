"""Cartridge as the token issuer of Distribution's token auth: the `/auth/token` endpoint, and real
`docker-registry` replicas that trust it (anonymous push refused, `docker login` with an API
token, scopes mapped to actions, replication and deletion with Cartridge's in-process tokens)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import docker
import httpx
import jwt
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import revoke_token
from app.cli.main import cli
from app.config import get_settings
from app.models import ApiToken, Image, ImageDeletion, Registry, Repository
from app.registries.copier import probe
from app.registries.distribution import DOCKER_MANIFEST, accept_header
from app.registries.proxy import Upstream, check, proxy_config, render
from app.registries.replication import replicate_image
from app.registry_auth.client import registry_client_auth
from app.registry_auth.keys import SigningKeyError, generate_pair, signing_key
from app.registry_auth.replica_config import distribution_auth_section
from app.registry_auth.tokens import worker_grant
from app.retention.service import apply
from tests.support.registry import RunningRegistry
from tests.support.registry_cluster import NginxProxy, PushedImage, build_image, nginx_proxy
from tests.support.registry_cluster import docker as docker_cli
from tests.support.server import free_port, serve
from workers.pipeline.publish import engine_credentials
from workers.retention import delete_from_replica


def basic(password: str, user: str = "someone") -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def claims(answer: dict[str, object]) -> dict[str, object]:
    return jwt.decode(str(answer["token"]), options={"verify_signature": False})


def access(answer: dict[str, object]) -> dict[str, list[str]]:
    return {str(a["name"]): list(a["actions"]) for a in claims(answer)["access"]}  # type: ignore[attr-defined]


@pytest.fixture
def token_auth(configure: Callable[..., None], tmp_path: Path) -> None:
    configure(registry_auth="token", state_dir=tmp_path / "state")


def test_tokens_follow_the_api_token_scope(
    token_auth: None, client: TestClient, make_token: Callable[..., str]
) -> None:
    asked = {"service": "cartridge-registry", "scope": "repository:octo/app:pull,push,delete"}
    for scope, actions in (
        ("read", ["pull"]),
        ("write", ["pull"]),
        ("admin", ["pull", "push", "delete"]),
    ):
        answer = client.get("/auth/token", params=asked, headers=basic(make_token(scope)))
        assert answer.status_code == 200, answer.text
        assert access(answer.json()) == {"octo/app": actions}
        body = answer.json()
        assert body["token"] == body["access_token"]
        assert body["expires_in"] == 300

    # A herd asking with one API token gets one token (so the proxy checks it once).
    reader = make_token("read", name="herd")
    tokens = {
        client.get("/auth/token", params=asked, headers=basic(reader)).json()["token"]
        for _ in range(5)
    }
    assert len(tokens) == 1

    # `docker login` asks with no scope: the credentials are checked, nothing is granted.
    login = client.get(
        "/auth/token", params={"service": "cartridge-registry"}, headers=basic(make_token("read"))
    )
    assert login.status_code == 200
    assert claims(login.json())["access"] == []


def test_token_is_signed_with_the_certificate_in_x5c(
    token_auth: None, client: TestClient, admin_token: str
) -> None:
    answer = client.get(
        "/auth/token",
        params={"service": "cartridge-registry", "scope": "repository:octo/app:pull"},
        headers=basic(admin_token),
    ).json()
    header = jwt.get_unverified_header(answer["token"])
    assert header["alg"] == "ES256"
    certificate = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    bundle = x509.load_pem_x509_certificate(
        signing_key(get_settings()).certificate_path.read_bytes()
    )
    assert certificate == bundle
    verified = jwt.decode(
        answer["token"],
        certificate.public_key(),  # type: ignore[arg-type]
        algorithms=["ES256"],
        audience="cartridge-registry",
        issuer="cartridge",
    )
    assert verified["exp"] - verified["iat"] == 300
    assert verified["sub"].startswith("token:")


def test_refusals(
    token_auth: None,
    client: TestClient,
    make_token: Callable[..., str],
    session: Session,
    configure: Callable[..., None],
) -> None:
    scope = {"service": "cartridge-registry", "scope": "repository:octo/app:pull"}
    anonymous = client.get("/auth/token", params=scope)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert anonymous.json()["error"]["code"] == "credentials_required"
    unknown = client.get("/auth/token", params=scope, headers=basic("ctg_not-a-token"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (401, "invalid_token")
    wrong_service = client.get(
        "/auth/token", params={**scope, "service": "elsewhere"}, headers=basic(make_token())
    )
    assert (wrong_service.status_code, wrong_service.json()["error"]["code"]) == (
        400,
        "unknown_service",
    )
    for bad in ("repository:octo/app", "registry:catalog:*", "repository:Octo/App:pull"):
        answer = client.get(
            "/auth/token", params={**scope, "scope": bad}, headers=basic(make_token())
        )
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_scope"), bad

    configure(registry_auth_anonymous_pull=True)
    anonymous = client.get(
        "/auth/token", params={**scope, "scope": "repository:octo/app:pull,push"}
    )
    assert anonymous.status_code == 200
    assert access(anonymous.json()) == {"octo/app": ["pull"]}

    configure(registry_auth="none")
    off = client.get("/auth/token", params=scope, headers=basic(make_token()))
    assert (off.status_code, off.json()["error"]["code"]) == (404, "registry_auth_off")


def test_a_worker_grant_pushes_one_repository_only(token_auth: None, client: TestClient) -> None:
    grant = worker_grant(get_settings(), "octo/app", seconds=60)
    answer = client.get(
        "/auth/token",
        params=[
            ("service", "cartridge-registry"),
            ("scope", "repository:octo/app:pull,push"),
            ("scope", "repository:octo/other:pull,push,delete"),
        ],
        headers=basic(grant, user="cartridge-build"),
    )
    assert answer.status_code == 200
    assert access(answer.json()) == {"octo/app": ["pull", "push"]}
    # A grant is no registry token, and a registry token is no grant.
    assert (
        client.get(
            "/auth/token",
            params={"scope": "repository:octo/app:push"},
            headers=basic(answer.json()["token"]),
        ).status_code
        == 401
    )
    expired = worker_grant(get_settings(), "octo/app", seconds=-120)
    assert (
        client.get(
            "/auth/token", params={"scope": "repository:octo/app:push"}, headers=basic(expired)
        ).status_code
        == 401
    )


# --- against real replicas -------------------------------------------------------------------


@pytest.fixture
def realm(token_auth: None, app, configure: Callable[..., None]) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with serve(app) as url:
        configure(registry_auth_realm=f"{url}/auth/token")
        yield url


@pytest.fixture
def secured(realm: str, tmp_path: Path) -> Iterator[list[RunningRegistry]]:
    """Two replicas that accept only Cartridge's tokens."""
    section = distribution_auth_section(get_settings())
    replicas = [
        RunningRegistry(tmp_path / f"r{i}", name=f"r{i}", extra_config=section) for i in (1, 2)
    ]
    try:
        for replica in replicas:
            replica.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Docker CLI config of the test's own, so `docker login` stores nothing elsewhere."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


def login(registry: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "login", "--username", "ops", "--password-stdin", registry],
        input=password,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def read_manifest(registry: str, repository: str, reference: str) -> httpx.Response:
    return httpx.get(
        f"http://{registry}/v2/{repository}/manifests/{reference}",
        headers={"Accept": accept_header(DOCKER_MANIFEST)},
        auth=registry_client_auth(),
        timeout=10,
    )


def pushed(registry: str, repository: str, tag: str) -> PushedImage:
    response = read_manifest(registry, repository, tag)
    response.raise_for_status()
    manifest = json.loads(response.content)
    layers = [
        {"digest": layer["digest"], "size": layer["size"], "media_type": layer["mediaType"]}
        for layer in manifest["layers"]
    ]
    return PushedImage(
        repository=repository,
        tag=tag,
        manifest_digest=response.headers["Docker-Content-Digest"],
        media_type=manifest["mediaType"],
        config_digest=manifest["config"]["digest"],
        layers=layers,
        size=sum(int(layer["size"]) for layer in manifest["layers"]),
    )


def push_with_grant(registry: str, repository: str, tag: str | None = None) -> str:
    """Builds an image and pushes it the way the build worker does (a grant for the engine)."""
    tag = tag or uuid.uuid4().hex
    reference = f"{registry}/{repository}"
    build_image(f"{reference}:{tag}")
    try:
        events = list(
            docker.APIClient().push(
                reference,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=engine_credentials(repository),
            )
        )
        assert not [e for e in events if "error" in e], events
    finally:
        docker_cli("rmi", "-f", f"{reference}:{tag}")
    return tag


@pytest.mark.e2e
def test_replicas_refuse_anonymous_pushes_and_honour_token_scopes(
    secured: list[RunningRegistry],
    realm: str,
    docker_config: Path,
    make_token: Callable[..., str],
    repository_path: str,
) -> None:
    r1 = secured[0]
    upload = httpx.post(f"{r1.url}/v2/{repository_path}/blobs/uploads/")
    assert upload.status_code == 401
    challenge = upload.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{realm}/auth/token",service="cartridge-registry"')
    # Distribution lists the actions in no fixed order.
    assert re.search(rf'scope="repository:{repository_path}:(pull,push|push,pull)"', challenge)

    reference = f"{r1.host}/{repository_path}:v1"
    build_image(reference)
    try:
        with pytest.raises(RuntimeError, match=r"no basic auth credentials|unauthorized"):
            docker_cli("push", reference)
        assert login(r1.host, "ctg_wrong").returncode != 0
        read = make_token("read", name="reader")
        assert login(r1.host, read).returncode == 0
        with pytest.raises(RuntimeError, match=r"denied|unauthorized"):
            docker_cli("push", reference)
        admin = make_token("admin", name="operator")
        logged_in = login(r1.host, admin)
        assert logged_in.returncode == 0, logged_in.stderr
        docker_cli("push", reference)
    finally:
        docker_cli("rmi", "-f", reference)
    assert read_manifest(r1.host, repository_path, "v1").status_code == 200
    # The image is there, and a read token pulls it; nobody pulls it anonymously.
    assert login(r1.host, read).returncode == 0
    docker_cli("pull", reference)
    docker_cli("rmi", "-f", reference)
    anonymous = httpx.get(f"{r1.url}/v2/{repository_path}/manifests/v1")
    assert anonymous.status_code == 401


@pytest.mark.e2e
def test_the_build_workers_push_uses_a_grant_for_its_repository(
    secured: list[RunningRegistry], repository_path: str
) -> None:
    r1 = secured[0]
    api = docker.APIClient()
    reference = f"{r1.host}/{repository_path}"
    other = f"{r1.host}/{repository_path}-other"
    build_image(f"{reference}:v1")
    docker_cli("tag", f"{reference}:v1", f"{other}:v1")
    try:
        events = list(
            api.push(
                reference,
                tag="v1",
                stream=True,
                decode=True,
                auth_config=engine_credentials(repository_path),
            )
        )
        assert not [e for e in events if "error" in e], events
        refused = list(
            api.push(
                other,
                tag="v1",
                stream=True,
                decode=True,
                auth_config=engine_credentials(repository_path),
            )
        )
        assert [e for e in refused if "error" in e], refused
    finally:
        docker_cli("rmi", "-f", f"{reference}:v1", f"{other}:v1")
    assert read_manifest(r1.host, repository_path, "v1").status_code == 200
    assert read_manifest(r1.host, f"{repository_path}-other", "v1").status_code == 404


@pytest.mark.e2e
def test_replication_health_and_deletion_with_auth_on(
    secured: list[RunningRegistry],
    session: Session,
    configure: Callable[..., None],
    make_repository: Callable[..., Repository],
    record_image: Callable[..., Image],
    repository_path: str,
) -> None:
    r1, r2 = secured
    configure(registry_url=r1.host, retention_keep_last=1, retention_keep_days=0)
    session.add_all([Registry(name="r1", url=r1.host), Registry(name="r2", url=r2.host)])
    repository = make_repository("octo/app", image_name=repository_path)
    images = []
    for _ in range(2):
        tag = push_with_grant(r1.host, repository_path)
        image = record_image(
            pushed(r1.host, repository_path, tag),
            repository=repository,
            branch="main",
            age=timedelta(days=60),
        )
        assert replicate_image(image.id).quorum_met
        session.commit()
        images.append(image)
    old, kept = images
    assert read_manifest(r2.host, repository_path, old.manifest_digest).status_code == 200
    assert asyncio.run(probe([r1.host, r2.host], timeout=5)) == {r1.host: None, r2.host: None}

    assert apply(session, get_settings(), limit=10) == [old.id]
    session.commit()
    deletions = session.scalars(select(ImageDeletion.id).order_by(ImageDeletion.id)).all()
    assert [delete_from_replica(d) for d in deletions] == ["done", "done"]
    for replica in (r1, r2):
        assert read_manifest(replica.host, repository_path, old.manifest_digest).status_code == 404
        assert read_manifest(replica.host, repository_path, kept.manifest_digest).status_code == 200
    deletes = [r for r in r1.requests() if r[0] == "DELETE"]
    assert [status for *_, status in deletes] == [202]


# --- the pull proxy ---------------------------------------------------------------------------


@pytest.fixture
def secured_proxy(
    secured: list[RunningRegistry],
    realm: str,
    session: Session,
    tmp_path: Path,
    configure: Callable[..., None],
    record_image: Callable[..., Image],
    repository_path: str,
) -> Iterator[tuple[NginxProxy, PushedImage]]:
    """Both replicas hold an image; nginx runs the generated config with auth on."""
    r1, r2 = secured
    port = free_port()
    configure(
        registry_url=r1.host,
        proxy_host=f"127.0.0.1:{port}",
        proxy_runtime_dir=tmp_path / "proxy" / "runtime",
        proxy_cache_path=tmp_path / "proxy" / "cache",
        proxy_auth_url=realm,
        proxy_worker_processes="2",
    )
    session.add_all([Registry(name="r1", url=r1.host), Registry(name="r2", url=r2.host)])
    session.commit()
    image = pushed(r1.host, repository_path, push_with_grant(r1.host, repository_path))
    assert replicate_image(record_image(image).id).quorum_met
    session.commit()
    with nginx_proxy(tmp_path / "proxy", port, proxy_config(session)) as proxy:
        yield proxy, image


def realm_token(realm: str, api_token: str, repository: str) -> str:
    answer = httpx.get(
        f"{realm}/auth/token",
        params={"service": "cartridge-registry", "scope": f"repository:{repository}:pull"},
        headers=basic(api_token),
    )
    answer.raise_for_status()
    return str(answer.json()["token"])


@pytest.mark.e2e
def test_the_proxy_challenges_then_serves_docker_pulls(
    secured_proxy: tuple[NginxProxy, PushedImage],
    realm: str,
    docker_config: Path,
    make_token: Callable[..., str],
    configure: Callable[..., None],
) -> None:
    proxy, image = secured_proxy
    version = httpx.get(f"http://{proxy.host}/v2/")
    assert version.status_code == 401
    assert version.headers["WWW-Authenticate"] == (
        f'Bearer realm="{realm}/auth/token",service="cartridge-registry"'
    )
    assert version.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    reader = make_token("read", name="deploy")
    assert httpx.get(f"http://{proxy.host}/v2/", headers=basic(reader)).status_code == 200

    by_digest = f"{proxy.host}/{image.repository}@{image.manifest_digest}"
    with pytest.raises(RuntimeError, match=r"no basic auth credentials|unauthorized"):
        docker_cli("pull", by_digest)
    assert login(proxy.host, reader).returncode == 0
    docker_cli("pull", by_digest)
    docker_cli("rmi", "-f", by_digest)

    # Anonymous pulls, when the operator allows them.
    docker_cli("logout", proxy.host)
    configure(registry_auth_anonymous_pull=True)
    docker_cli("pull", by_digest)
    docker_cli("rmi", "-f", by_digest)


@pytest.mark.e2e
def test_a_cached_blob_is_served_only_to_callers_who_may_read_its_repository(
    secured_proxy: tuple[NginxProxy, PushedImage],
    realm: str,
    make_token: Callable[..., str],
    session: Session,
) -> None:
    proxy, image = secured_proxy
    blob = f"http://{proxy.host}/v2/{image.repository}/blobs/{image.config_digest}"
    reader = make_token("read", name="deploy")
    first = httpx.get(blob, headers=basic(reader))
    assert first.status_code == 200
    assert "sha256:" + hashlib.sha256(first.content).hexdigest() == image.config_digest
    bearer = {"Authorization": f"Bearer {realm_token(realm, reader, image.repository)}"}
    again = httpx.get(blob, headers=bearer)
    assert (again.status_code, again.headers["X-Cache-Status"]) == (200, "HIT")
    assert again.content == first.content

    # Cached, and still nobody else's.
    anonymous = httpx.get(blob)
    assert anonymous.status_code == 401
    assert (
        'scope="repository:' + image.repository + ':pull"'
        in (anonymous.headers["WWW-Authenticate"])
    )
    forged = httpx.get(blob, headers={"Authorization": "Bearer not.a.token"})
    assert forged.status_code == 401
    other_repository = f"{image.repository}-other"
    elsewhere = {"Authorization": f"Bearer {realm_token(realm, reader, other_repository)}"}
    refused = httpx.get(blob, headers=elsewhere)
    assert refused.status_code == 401
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    # Through another repository's path the digest is not taken from the cache.
    through_other = httpx.get(
        f"http://{proxy.host}/v2/{other_repository}/blobs/{image.config_digest}", headers=elsewhere
    )
    assert through_other.status_code == 404
    fetches = proxy.upstream_fetches()
    assert fetches[f"/v2/{image.repository}/blobs/{image.config_digest}"] == 1


@pytest.mark.e2e
def test_auth_answers_are_cached_per_credential_and_repository_briefly(
    secured_proxy: tuple[NginxProxy, PushedImage],
    make_token: Callable[..., str],
    session: Session,
) -> None:
    proxy, image = secured_proxy
    reader = make_token("read", name="soon-revoked")
    manifest = f"http://{proxy.host}/v2/{image.repository}/manifests/{image.manifest_digest}"
    accept = {"Accept": accept_header(DOCKER_MANIFEST)}
    assert httpx.get(manifest, headers={**accept, **basic(reader)}).status_code == 200
    token_id = session.scalars(select(ApiToken.id).where(ApiToken.name == "soon-revoked")).one()
    revoke_token(session, token_id)
    session.commit()
    # The yes for this credential and repository is still cached (proxy_auth_cache_seconds)...
    assert httpx.get(manifest, headers={**accept, **basic(reader)}).status_code == 200
    # ...but it is no yes for anything else: the version check asks Cartridge again.
    assert httpx.get(f"http://{proxy.host}/v2/", headers=basic(reader)).status_code == 401


# --- configuration ----------------------------------------------------------------------------


def test_the_replica_auth_section_printed_and_documented_agree(
    token_auth: None, configure: Callable[..., None]
) -> None:
    printed = CliRunner().invoke(cli, ["registry", "auth-config"])
    assert printed.exit_code == 0, printed.output
    section = yaml.safe_load(printed.output)["auth"]["token"]
    assert section == {
        "realm": "http://127.0.0.1:8000/auth/token",
        "service": "cartridge-registry",
        "issuer": "cartridge",
        "rootcertbundle": str(signing_key(get_settings()).certificate_path),
    }
    deploy = (Path(__file__).parents[2] / "deploy" / "registry" / "config.yml").read_text()
    commented = [line[2:] for line in deploy.splitlines() if line.startswith("# ")]
    example = yaml.safe_load("\n".join(commented[commented.index("auth:") :]))
    assert set(example["auth"]["token"]) == set(section)

    configure(registry_auth="none")
    off = CliRunner().invoke(cli, ["registry", "auth-config"])
    assert off.exit_code == 1
    assert "CARTRIDGE_REGISTRY_AUTH=token" in off.output


def test_production_needs_a_configured_key(token_auth: None) -> None:
    settings = get_settings().model_copy(update={"environment": "production"})
    assert any("CARTRIDGE_REGISTRY_AUTH_KEY_FILE" in p for p in settings.production_problems())


def test_a_configured_key_must_match_its_certificate(
    token_auth: None, tmp_path: Path, configure: Callable[..., None]
) -> None:
    key_pem, _ = generate_pair("one")
    _, other_certificate = generate_pair("two")
    (tmp_path / "k.pem").write_bytes(key_pem)
    (tmp_path / "c.pem").write_bytes(other_certificate)
    configure(
        registry_auth_key_file=tmp_path / "k.pem", registry_auth_certificate_file=tmp_path / "c.pem"
    )
    with pytest.raises(SigningKeyError, match="does not certify"):
        signing_key(get_settings())


def test_the_proxy_config_with_auth_on_checks_before_its_cache(
    token_auth: None, configure: Callable[..., None]
) -> None:
    configure(proxy_auth_url="http://10.0.0.9:8000")
    replicas = [Upstream("127.0.0.1:5001"), Upstream("127.0.0.1:5002")]
    check(replicas, get_settings())  # nginx -t
    text = render(replicas, get_settings())
    server = text[text.index("    server {") :]
    assert server.index("auth_request /_cartridge_auth;") < server.index("location ~")
    assert "proxy_pass http://10.0.0.9:8000/auth/proxy;" in text
    assert 'proxy_cache_key "blob $repo $digest";' in text
    assert 'proxy_cache_key "$http_authorization $pull_repository";' in text
    assert "return 200 '{}';" not in text.split("location = /v2/ {", 1)[1].split("}", 1)[0]

    configure(registry_auth="none")
    open_text = render(replicas, get_settings())
    assert "auth_request" not in open_text
    assert 'proxy_cache_key "blob $digest";' in open_text
