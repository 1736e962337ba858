"""Real pulls (`docker pull`, `skopeo copy`, plain HTTP) through nginx running the generated
config in front of three real replicas."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import Image, Registry
from app.registries.distribution import accept_header
from app.registries.proxy import proxy_config
from app.registries.replication import replicate_image
from tests.support.registry_cluster import (
    NginxProxy,
    PushedImage,
    RegistryCluster,
    docker,
    push_image,
)
from tests.support.server import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def start_proxy(
    session: Session, tmp_path: Path, configure: Callable[..., None]
) -> Iterator[Callable[[], NginxProxy]]:
    """Renders the config from the recorded replicas (as `cartridge proxy-config` does) and runs
    nginx on it."""
    port = free_port()
    directory = tmp_path / "proxy"
    configure(
        proxy_host=f"127.0.0.1:{port}",
        proxy_runtime_dir=directory / "runtime",
        proxy_cache_path=directory / "cache",
        proxy_worker_processes="2",
    )
    proxies: list[NginxProxy] = []

    def start() -> NginxProxy:
        proxies.append(NginxProxy(directory, port))
        proxies[-1].start(proxy_config(session))
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def pushed(
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
) -> PushedImage:
    """An image on every replica."""
    image = push_image(cluster[0].host, repository_path, layers=3, layer_bytes=1 << 20)
    assert replicate_image(record_image(image).id).quorum_met
    session.commit()
    return image


def _skopeo_copy(source: str, destination: Path) -> str:
    """Copies `docker://source` to a directory; returns the digest of the manifest it got."""
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{source}", f"dir:{destination}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    manifest = (destination / "manifest.json").read_bytes()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_docker_and_skopeo_pull_through_the_proxy(
    pushed: PushedImage, start_proxy: Callable[[], NginxProxy], tmp_path: Path
) -> None:
    proxy = start_proxy()
    by_digest = f"{proxy.host}/{pushed.repository}@{pushed.manifest_digest}"

    docker("pull", by_digest)
    try:
        inspected = json.loads(docker("image", "inspect", by_digest))
        assert by_digest in inspected[0]["RepoDigests"]
    finally:
        docker("rmi", "-f", by_digest)

    by_tag = f"{proxy.host}/{pushed.repository}:{pushed.tag}"
    assert _skopeo_copy(by_tag, tmp_path / "first") == pushed.manifest_digest
    assert _skopeo_copy(by_tag, tmp_path / "second") == pushed.manifest_digest

    fetches = proxy.upstream_fetches()
    for digest in pushed.blob_digests():
        # Two pullers and two clients: each blob came from a replica once, then from the cache.
        assert fetches[f"/v2/{pushed.repository}/blobs/{digest}"] == 1


def test_the_proxy_refuses_writes_and_always_names_its_api_version(
    pushed: PushedImage, start_proxy: Callable[[], NginxProxy]
) -> None:
    proxy = start_proxy()
    base = f"http://{proxy.host}/v2/{pushed.repository}"

    for method, path in [
        ("POST", "/blobs/uploads/"),
        ("PUT", f"/manifests/{pushed.tag}"),
        ("PATCH", "/blobs/uploads/x"),
        ("DELETE", f"/manifests/{pushed.manifest_digest}"),
    ]:
        response = httpx.request(method, base + path, content=b"{}")
        assert response.status_code == 405, (method, path)
        assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert response.headers.get_list("Docker-Distribution-Api-Version") == ["registry/2.0"]

    accept = {"Accept": accept_header(pushed.media_type)}
    head = httpx.head(f"{base}/manifests/{pushed.manifest_digest}", headers=accept)
    get = httpx.get(f"{base}/manifests/{pushed.manifest_digest}", headers=accept)
    assert head.status_code == get.status_code == 200
    # The HEAD went first; the GET still gets the whole manifest, not a cached empty body.
    assert "sha256:" + hashlib.sha256(get.content).hexdigest() == pushed.manifest_digest
    blob = httpx.get(f"{base}/blobs/{pushed.config_digest}")
    missing = httpx.get(f"{base}/blobs/sha256:{'0' * 64}")
    for response in (head, get, blob, missing, httpx.get(f"http://{proxy.host}/v2/")):
        assert response.headers.get_list("Docker-Distribution-Api-Version") == ["registry/2.0"]
    assert missing.status_code == 404


def test_pulls_survive_a_stopped_replica_and_one_that_missed_the_push(
    session: Session,
    cluster: RegistryCluster,
    replicas: list[Registry],
    repository_path: str,
    record_image: Callable[[PushedImage], Image],
    start_proxy: Callable[[], NginxProxy],
    tmp_path: Path,
) -> None:
    image = push_image(cluster[0].host, repository_path, layers=3)
    cluster[2].stop()
    assert not replicate_image(record_image(image).id).quorum_met
    session.commit()
    cluster[2].start()  # back, but without the image
    proxy = start_proxy()
    cluster[0].stop()  # the source goes down after the config was generated

    by_tag = f"{proxy.host}/{repository_path}:{image.tag}"
    assert _skopeo_copy(by_tag, tmp_path / "pulled") == image.manifest_digest
    by_digest = f"{proxy.host}/{repository_path}@{image.manifest_digest}"
    docker("pull", by_digest)
    docker("rmi", "-f", by_digest)

    # r3 was asked for some objects, said 404, and nginx went on to r2.
    assert any(status == 404 for method, _, status in cluster[2].requests() if method == "GET")
    served_by_r2 = [p for m, p, s in cluster[1].requests() if m == "GET" and s == 200]
    assert {f"/v2/{repository_path}/blobs/{d}" for d in image.blob_digests()} <= set(served_by_r2)


def test_cached_images_stay_pullable_while_every_replica_is_down(
    cluster: RegistryCluster,
    pushed: PushedImage,
    start_proxy: Callable[[], NginxProxy],
    configure: Callable[..., None],
    tmp_path: Path,
) -> None:
    configure(proxy_tag_cache_seconds=1)
    proxy = start_proxy()
    by_tag = f"{proxy.host}/{pushed.repository}:{pushed.tag}"
    assert _skopeo_copy(by_tag, tmp_path / "warm") == pushed.manifest_digest
    for replica in cluster.replicas:
        replica.stop()
    time.sleep(2)  # the tag's cache entry is now expired: only a stale copy is left

    assert _skopeo_copy(by_tag, tmp_path / "stale") == pushed.manifest_digest
    tag_lines = [line for line in proxy.log_lines() if f"/manifests/{pushed.tag} " in line]
    assert "cache=STALE" in tag_lines[-1]


def test_fifty_concurrent_pulls_fetch_each_blob_from_the_replicas_once(
    cluster: RegistryCluster, pushed: PushedImage, start_proxy: Callable[[], NginxProxy]
) -> None:
    proxy = start_proxy()
    before = cluster.blob_downloads()
    base = f"http://{proxy.host}/v2/{pushed.repository}"
    start_together = threading.Barrier(50)

    def pull(_: int) -> list[str]:
        with httpx.Client(timeout=60) as client:
            start_together.wait()
            manifest = client.get(
                f"{base}/manifests/{pushed.manifest_digest}",
                headers={"Accept": accept_header(pushed.media_type)},
            )
            manifest.raise_for_status()
            got = ["sha256:" + hashlib.sha256(manifest.content).hexdigest()]
            for digest in pushed.blob_digests():
                blob = client.get(f"{base}/blobs/{digest}")
                blob.raise_for_status()
                got.append("sha256:" + hashlib.sha256(blob.content).hexdigest())
            return got

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(pull, range(50)))

    assert results == [[pushed.manifest_digest, *pushed.blob_digests()]] * 50
    downloads = cluster.blob_downloads() - before
    assert downloads == Counter(dict.fromkeys(pushed.blob_digests(), 1))
    fetches = proxy.upstream_fetches()
    assert fetches[f"/v2/{pushed.repository}/manifests/{pushed.manifest_digest}"] == 1
