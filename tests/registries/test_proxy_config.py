"""The generated nginx config: derived from the replicas and their health, checked by `nginx -t`
before it is offered (API and CLI)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.cli.main import cli
from app.config import get_settings
from app.models import Registry
from app.registries.proxy import ProxyConfigInvalid, Upstream, proxy_config, render


def _upstream_servers(config: str) -> list[str]:
    block = re.search(r"upstream cartridge_replicas \{(.*?)\}", config, re.S)
    assert block
    return [
        line.strip() for line in block.group(1).splitlines() if line.strip().startswith("server")
    ]


def _location(config: str, marker: str) -> str:
    start = config.index(marker)
    return config[start : config.index("\n        }", start)]


@pytest.fixture
def three(session: Session) -> list[Registry]:
    rows = [
        Registry(name="r1", url="127.0.0.1:5001", healthy=True),
        Registry(name="r2", url="127.0.0.1:5002", healthy=False),
        Registry(name="r3", url="127.0.0.1:5003", healthy=True),
    ]
    session.add_all(rows)
    session.commit()
    return rows


def test_unhealthy_replicas_are_kept_only_as_backups(
    session: Session, three: list[Registry], configure: Callable[..., None], tmp_path: Path
) -> None:
    configure(
        proxy_host="127.0.0.1:6123",
        proxy_cache_path=tmp_path / "cache",
        proxy_cache_max_size="3g",
        proxy_runtime_dir=tmp_path / "run",
    )
    config = proxy_config(session)

    assert _upstream_servers(config) == [
        "server 127.0.0.1:5001 max_fails=1 fail_timeout=10s;",
        "server 127.0.0.1:5002 backup;  # unhealthy at the last check",
        "server 127.0.0.1:5003 max_fails=1 fail_timeout=10s;",
    ]
    assert "listen 127.0.0.1:6123;" in config
    assert f"proxy_cache_path {tmp_path / 'cache'} " in config
    assert "max_size=3g" in config
    assert f"pid {tmp_path / 'run'}/nginx.pid;" in config
    # Every replica may be tried once before the client gets an error.
    assert "proxy_next_upstream_tries 3;" in config


def test_when_no_replica_is_recorded_healthy_all_are_tried(
    session: Session, three: list[Registry]
) -> None:
    for row in three:
        row.healthy = False
    session.commit()

    servers = _upstream_servers(proxy_config(session))

    assert len(servers) == 3
    assert not any("backup" in line for line in servers)


def test_without_configured_replicas_the_push_registry_is_the_upstream(
    session: Session, configure: Callable[..., None]
) -> None:
    configure(registry_url="127.0.0.1:5999")

    assert _upstream_servers(proxy_config(session)) == [
        "server 127.0.0.1:5999 max_fails=1 fail_timeout=10s;"
    ]


def test_digest_locations_retry_on_404_and_keep_methods_apart() -> None:
    config = render([Upstream("127.0.0.1:5001"), Upstream("127.0.0.1:5002")], get_settings())

    blobs = _location(config, 'location ~ "^/v2/(?<repo>.+)/blobs/')
    by_digest = _location(config, 'location ~ "^/v2/(?<repo>.+)/manifests/(?<digest>')
    by_tag = _location(config, 'location ~ "^/v2/(?<repo>.+)/manifests/(?<tag>')
    for block in (blobs, by_digest):
        assert "http_404" in block
        assert "proxy_cache cartridge_registry;" in block
    assert 'proxy_cache_key "blob $digest";' in blobs
    assert "$request_method" in by_digest
    assert "$request_method" in by_tag
    assert "proxy_cache_revalidate on;" in by_tag
    assert "proxy_cache_lock on;" in config


def test_https_and_plain_http_replicas_cannot_share_the_upstream_group() -> None:
    with pytest.raises(ProxyConfigInvalid):
        render([Upstream("127.0.0.1:5001"), Upstream("registry.example.com:443")], get_settings())


def test_https_replicas_are_reached_over_tls() -> None:
    config = render(
        [Upstream("registry-1.example.com"), Upstream("https://10.0.0.7:5000")], get_settings()
    )

    assert "proxy_pass https://cartridge_replicas;" in config
    assert _upstream_servers(config)[0].startswith("server registry-1.example.com:443 ")


def test_the_api_serves_the_checked_config_as_plain_text(
    client: TestClient, three: list[Registry]
) -> None:
    response = client.get("/api/v1/registries/proxy-config")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "upstream cartridge_replicas" in response.text


def test_a_config_nginx_refuses_is_not_offered(
    client: TestClient, three: list[Registry], configure: Callable[..., None]
) -> None:
    configure(proxy_cache_max_size="a-lot")

    response = client.get("/api/v1/registries/proxy-config")

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "proxy_config_invalid"
    assert "max_size" in error["details"]["nginx_output"]


def test_without_nginx_the_config_cannot_be_checked(
    client: TestClient, three: list[Registry], configure: Callable[..., None]
) -> None:
    configure(nginx_binary="/nonexistent/nginx")

    response = client.get("/api/v1/registries/proxy-config")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "nginx_unavailable"


def test_the_cli_writes_the_config(three: list[Registry], tmp_path: Path) -> None:
    target = tmp_path / "cartridge-proxy.conf"

    result = CliRunner().invoke(cli, ["proxy-config", "--output", str(target)])

    assert result.exit_code == 0, result.output
    assert len(_upstream_servers(target.read_text())) == 3


def test_the_cli_refuses_to_print_an_invalid_config(
    three: list[Registry], configure: Callable[..., None]
) -> None:
    configure(proxy_host="127.0.0.1:99999")

    result = CliRunner().invoke(cli, ["proxy-config"])

    assert result.exit_code == 1
    assert "proxy_config_invalid" in result.output
    assert "upstream cartridge_replicas" not in result.output
