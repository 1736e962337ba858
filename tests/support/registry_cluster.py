"""Real registry replicas (`docker-registry`), a real nginx running a generated proxy config, and
images pushed with the Docker engine, for tests and benchmarks.

Everything lives under a caller's directory and listens on free loopback ports, so concurrent
runs on one machine do not meet; processes are stopped by their own pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.registries.distribution import DOCKER_MANIFEST, accept_header
from tests.support.registry import ACCESS_LINE, RunningRegistry, stop_process, wait_until

BASE_IMAGE = "cartridge/base:latest"


@dataclass
class RegistryCluster:
    replicas: list[RunningRegistry]

    def __getitem__(self, index: int) -> RunningRegistry:
        return self.replicas[index]

    def blob_downloads(self) -> Counter[str]:
        """Blob digest -> successful GETs across every replica."""
        counts: Counter[str] = Counter()
        for replica in self.replicas:
            for method, path, status in replica.requests():
                if method == "GET" and status == 200 and "/blobs/sha256:" in path:
                    counts[path.rsplit("/", 1)[1]] += 1
        return counts


@contextmanager
def registry_cluster(directory: Path, count: int = 3) -> Iterator[RegistryCluster]:
    cluster = RegistryCluster(
        [RunningRegistry(directory / f"r{i + 1}", name=f"r{i + 1}") for i in range(count)]
    )
    try:
        for replica in cluster.replicas:
            replica.start()
        yield cluster
    finally:
        for replica in cluster.replicas:
            replica.stop()


@dataclass
class NginxProxy:
    """nginx running a config rendered by Cartridge, with its files under `directory`."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def runtime_dir(self) -> Path:
        return self.directory / "runtime"

    @property
    def cache_dir(self) -> Path:
        return self.directory / "cache"

    def start(self, config_text: str) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nginx.conf"
        conf.write_text(config_text)
        command = ["nginx", "-p", str(self.directory), "-c", str(conf), "-e", "stderr"]
        # As root, workers would run as `nobody` and could not enter a private temp directory.
        directives = "daemon off; master_process on;" + (" user root;" if os.geteuid() == 0 else "")
        log = (self.directory / "nginx.stderr").open("ab")
        self.process = subprocess.Popen([*command, "-g", directives], stdout=log, stderr=log)
        log.close()
        wait_until(self._answers, "nginx")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            stderr = (self.directory / "nginx.stderr").read_text()
            raise RuntimeError(f"nginx exited: {stderr}")
        try:
            httpx.get(f"http://{self.host}/", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    def log_lines(self) -> list[str]:
        path = self.runtime_dir / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def upstream_fetches(self) -> Counter[str]:
        """Request path -> how many requests for it nginx passed to a replica (its access log
        names the replicas asked, or `-` when the cache answered)."""
        counts: Counter[str] = Counter()
        for line in self.log_lines():
            match = ACCESS_LINE.search(line)
            if match and " upstream=-" not in line:
                counts[match["path"]] += 1
        return counts


@contextmanager
def nginx_proxy(directory: Path, port: int, config_text: str) -> Iterator[NginxProxy]:
    proxy = NginxProxy(directory, port)
    try:
        proxy.start(config_text)
        yield proxy
    finally:
        proxy.stop()


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    manifest_digest: str
    media_type: str
    config_digest: str
    layers: list[dict[str, object]]
    size: int

    def blob_digests(self) -> list[str]:
        return [self.config_digest, *(str(layer["digest"]) for layer in self.layers)]


def build_image(
    tag: str, *, layers: int = 2, layer_bytes: int = 256 * 1024, compressible: bool = False
) -> None:
    """Builds an image from the local base image with `layers` layers of fresh random data:
    raw bytes (gzip cannot shrink them) or base64 text (gzip shrinks it to about 3/4)."""
    nonce = uuid.uuid4().hex
    data = (
        f"head -c {layer_bytes * 3 // 4} /dev/urandom | base64"
        if compressible
        else f"head -c {layer_bytes} /dev/urandom"
    )
    steps = "\n".join(f"RUN echo {nonce} > /nonce-{i} && {data} > /data-{i}" for i in range(layers))
    with tempfile.TemporaryDirectory(prefix="cartridge-image-") as context:
        (Path(context) / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\n{steps}\n")
        docker("build", "-q", "-t", tag, context)


def push_image(
    registry: str,
    repository: str,
    *,
    tag: str | None = None,
    layers: int = 2,
    layer_bytes: int = 256 * 1024,
) -> PushedImage:
    """Builds a fresh image, `docker push`es it to `registry` and removes the local copy."""
    tag = tag or uuid.uuid4().hex
    reference = f"{registry}/{repository}:{tag}"
    build_image(reference, layers=layers, layer_bytes=layer_bytes)
    try:
        docker("push", reference)
    finally:
        docker("rmi", "-f", reference)
    return read_image(registry, repository, tag)


def read_image(registry: str, repository: str, tag: str) -> PushedImage:
    response = httpx.get(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": accept_header(DOCKER_MANIFEST)},
        timeout=10,
    )
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


def docker(*args: str) -> str:
    completed = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=300, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout
