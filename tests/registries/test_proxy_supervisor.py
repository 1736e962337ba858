"""`cartridge proxy serve` against real nginx and real replicas: it starts the proxy, reloads it
when the replicas change, and never loads a config nginx refuses."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Image, Registry
from app.registries import service
from app.registries.proxy_supervisor import ProxySupervisor
from tests.support.registry import stop_process, wait_until
from tests.support.registry_cluster import PushedImage, RegistryCluster, docker, push_image
from tests.support.server import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxy_settings(
    tmp_path: Path, configure: Callable[..., None], cluster: RegistryCluster
) -> Iterator[str]:
    """Settings for a proxy on a free loopback port with its files under tmp_path."""
    host = f"127.0.0.1:{free_port()}"
    configure(
        proxy_host=host,
        proxy_runtime_dir=tmp_path / "proxy",
        proxy_cache_path=tmp_path / "proxy-cache",
        registry_url=cluster[0].host,
        host_name="proxy-host-1",
        # The temporary directory is root's alone: workers running as `nobody` could not enter it.
        proxy_worker_user="root",
    )
    yield host
    ProxySupervisor(get_settings()).stop_nginx()


def _manifest_status(proxy: str, path: str, digest: str) -> int:
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    response = httpx.get(
        f"http://{proxy}/v2/{path}/manifests/{digest}", headers={"Accept": accept}, timeout=10
    )
    return response.status_code


def test_the_proxy_follows_the_replicas_and_keeps_a_good_config(
    session: Session,
    client: TestClient,
    cluster: RegistryCluster,
    proxy_settings: str,
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> None:
    session.add(Registry(name="r1", url=cluster[0].host, required=True))
    session.commit()
    pushed = push_image(cluster[0].host, repository_path)
    image = record_image(pushed)
    supervisor = ProxySupervisor(get_settings())

    first = supervisor.apply_once()
    assert (first.changed, first.error) == (True, None)
    assert supervisor.nginx_running()
    assert _manifest_status(proxy_settings, repository_path, pushed.manifest_digest) == 200
    assert supervisor.apply_once().changed is False  # nothing changed: no reload
    # The pull went into the proxy's access log; the pass recorded it for retention.
    session.refresh(image)
    assert image.last_pulled_at is not None

    # A second replica: the config names it and nginx is reloaded, not restarted.
    pid = supervisor._pid()
    service.create_registry(session, "r2", cluster[1].host)
    session.commit()
    assert supervisor.apply_once().changed is True
    assert cluster[1].host in supervisor.config_path.read_text()
    assert supervisor._pid() == pid

    # A replica nginx cannot resolve: `nginx -t` refuses, the running config stays.
    running = supervisor.config_path.read_text()
    service.create_registry(session, "r3", "http://no-such-replica.invalid:5000")
    session.commit()
    refused = supervisor.apply_once()
    assert refused.changed is False
    assert "nginx refuses" in (refused.error or "")
    assert supervisor.config_path.read_text() == running
    assert _manifest_status(proxy_settings, repository_path, pushed.manifest_digest) == 200

    [host] = client.get("/api/v1/proxies").json()["items"]
    assert (host["host_name"], host["listen"], host["reloads"]) == (
        "proxy-host-1",
        proxy_settings,
        2,
    )
    assert "nginx refuses" in host["last_error"]
    metrics = client.get("/metrics").text
    assert 'cartridge_proxy_config_refused{host="proxy-host-1"} 1.0' in metrics
    assert 'cartridge_proxy_config_reloads_total{host="proxy-host-1"} 2.0' in metrics

    # Fixed: the next pass loads the config and clears the error.
    service.delete_registry(session, "r3")
    session.commit()
    assert supervisor.apply_once().error is None
    assert client.get("/api/v1/proxies").json()["items"][0]["last_error"] is None


def test_proxy_serve_runs_nginx_until_stopped_and_docker_pulls_through_it(
    session: Session,
    cluster: RegistryCluster,
    proxy_settings: str,
    repository_path: str,
    tmp_path: Path,
) -> None:
    pushed = push_image(cluster[0].host, repository_path)
    log = (tmp_path / "proxy-serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "proxy", "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: _answers(proxy_settings), "cartridge proxy serve", timeout=30)
        reference = f"{proxy_settings}/{repository_path}@{pushed.manifest_digest}"
        docker("pull", reference)
        docker("rmi", "-f", reference)
    finally:
        stop_process(process)  # type: ignore[arg-type]
        log.close()
    # SIGTERM stops nginx too: nothing answers on the proxy's port any more.
    deadline = time.monotonic() + 10
    while _answers(proxy_settings) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _answers(proxy_settings)


def _answers(proxy: str) -> bool:
    try:
        return httpx.get(f"http://{proxy}/v2/", timeout=2).status_code < 500
    except httpx.HTTPError:
        return False
