"""Registry fan-out and pull benchmark: pushing to 1 vs. 3 replicas, and 50 concurrent pulls
through the caching proxy vs. straight from one registry.

    python3 bench/registry_fanout.py [--trials 7] [--layers 4] [--layer-mb 16] [--pulls 50]
                                     [--content random|text]

Runs three `docker-registry` replicas and nginx (with the config Cartridge generates) on
loopback ports, an SQLite database in a temporary directory, and the local Docker engine. Every
image is built fresh from `cartridge/base:latest` with new random layers, so no push is helped
by an earlier one. Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from app import migrate  # noqa: E402
from app.db import reset_caches, session_scope  # noqa: E402
from app.models import Build, Image, Registry, Repository  # noqa: E402
from app.registries.distribution import accept_header  # noqa: E402
from app.registries.proxy import proxy_config  # noqa: E402
from app.registries.replication import replicate_image  # noqa: E402
from tests.support.registry_cluster import (  # noqa: E402
    PushedImage,
    RegistryCluster,
    build_image,
    docker,
    nginx_proxy,
    read_image,
    registry_cluster,
)
from tests.support.server import free_port  # noqa: E402


def timed(action: Callable[..., None], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def fresh_image(args: argparse.Namespace) -> str:
    """Builds a new image (not timed) and returns its local name."""
    name = f"bench/app-{uuid.uuid4().hex[:10]}"
    build_image(
        name,
        layers=args.layers,
        layer_bytes=args.layer_mb << 20,
        compressible=args.content == "text",
    )
    return name


def push(local: str, registry: str, repository: str, tag: str) -> None:
    target = f"{registry}/{repository}:{tag}"
    docker("tag", local, target)
    try:
        docker("push", target)
    finally:
        docker("rmi", target)


def record(pushed: PushedImage) -> int:
    with session_scope() as session:
        repository = Repository(
            full_name=f"bench/{uuid.uuid4().hex[:8]}", clone_url="-", image_name="bench"
        )
        session.add(repository)
        session.flush()
        build = Build(repository_id=repository.id, sha=uuid.uuid4().hex + "0" * 8)
        session.add(build)
        session.flush()
        image = Image(
            build_id=build.id,
            name=pushed.repository,
            tag=pushed.tag,
            manifest_digest=pushed.manifest_digest,
            config_digest=pushed.config_digest,
            media_type=pushed.media_type,
            size=pushed.size,
            layers=pushed.layers,
        )
        session.add(image)
        session.flush()
        return image.id


def push_to_one(local: str, cluster: RegistryCluster, repository: str) -> None:
    push(local, cluster[0].host, repository, uuid.uuid4().hex)


def push_and_replicate(local: str, cluster: RegistryCluster, repository: str) -> None:
    """What a build does: one `docker push`, then Cartridge copies to the other replicas."""
    tag = uuid.uuid4().hex
    push(local, cluster[0].host, repository, tag)
    image_id = record(read_image(cluster[0].host, repository, tag))
    result = replicate_image(image_id)
    if not result.quorum_met:
        raise RuntimeError(result.describe())


def push_to_each(local: str, cluster: RegistryCluster, repository: str) -> None:
    for replica in cluster.replicas:
        push(local, replica.host, repository, uuid.uuid4().hex)


PUSHES: dict[str, Callable[[str, RegistryCluster, str], None]] = {
    "one": push_to_one,
    "three": push_and_replicate,
    "naive": push_to_each,
}


def fan_out(args: argparse.Namespace, cluster: RegistryCluster) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {kind: [] for kind in PUSHES}
    for trial in range(args.trials):
        images = {kind: fresh_image(args) for kind in PUSHES}
        # Alternate the order so that neither side always runs on a warmer machine.
        kinds = list(PUSHES) if trial % 2 == 0 else list(reversed(PUSHES))
        for kind in kinds:
            repository = f"bench/{kind}-{uuid.uuid4().hex[:8]}"
            times[kind].append(timed(PUSHES[kind], images[kind], cluster, repository))
            docker("rmi", images[kind])
    return times


@dataclass(frozen=True)
class PullRun:
    seconds: float
    received: int

    def describe(self) -> str:
        return f"{self.seconds:.2f} s, {self.received / self.seconds / (1 << 20):.0f} MiB/s"


@dataclass(frozen=True)
class HerdResult:
    image_mb: float
    blobs: int
    fetches_per_blob: list[int]
    direct: PullRun
    cold: PullRun
    warm: PullRun


def pull_all(base: str, image: PushedImage, pulls: int) -> PullRun:
    """`pulls` concurrent clients each fetch the manifest and every blob, checking digests."""
    start_together = threading.Barrier(pulls)
    digests = [image.manifest_digest, *image.blob_digests()]
    urls = [f"{base}/manifests/{image.manifest_digest}"]
    urls += [f"{base}/blobs/{digest}" for digest in image.blob_digests()]

    def one(_: int) -> int:
        received = 0
        with httpx.Client(timeout=300) as client:
            start_together.wait()
            for url, digest in zip(urls, digests, strict=True):
                response = client.get(url, headers={"Accept": accept_header(image.media_type)})
                response.raise_for_status()
                if "sha256:" + hashlib.sha256(response.content).hexdigest() != digest:
                    raise RuntimeError(f"{url} served the wrong bytes")
                received += len(response.content)
        return received

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=pulls) as pool:
        total = sum(pool.map(one, range(pulls)))
    return PullRun(time.perf_counter() - started, total)


def herd(args: argparse.Namespace, cluster: RegistryCluster, work: Path) -> HerdResult:
    local = fresh_image(args)
    repository = f"bench/herd-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex
    push(local, cluster[0].host, repository, tag)
    docker("rmi", local)
    image = read_image(cluster[0].host, repository, tag)
    if not replicate_image(record(image)).quorum_met:
        raise RuntimeError("the herd image did not reach every replica")

    direct = pull_all(f"http://{cluster[0].host}/v2/{repository}", image, args.pulls)
    port = free_port()
    os.environ.update(
        {
            "CARTRIDGE_PROXY_HOST": f"127.0.0.1:{port}",
            "CARTRIDGE_PROXY_RUNTIME_DIR": str(work / "proxy" / "runtime"),
            "CARTRIDGE_PROXY_CACHE_PATH": str(work / "proxy" / "cache"),
        }
    )
    reset_caches()
    with session_scope() as session:
        config = proxy_config(session)
    before = cluster.blob_downloads()
    with nginx_proxy(work / "proxy", port, config) as proxy:
        base = f"http://{proxy.host}/v2/{repository}"
        cold = pull_all(base, image, args.pulls)
        fetches = cluster.blob_downloads() - before
        warm = pull_all(base, image, args.pulls)
    return HerdResult(
        image_mb=image.size / (1 << 20),
        blobs=len(image.blob_digests()),
        fetches_per_blob=[fetches[digest] for digest in image.blob_digests()],
        direct=direct,
        cold=cold,
        warm=warm,
    )


def report(
    args: argparse.Namespace,
    fan: dict[str, list[float]],
    pulls: HerdResult,
    load: tuple[float, float],
) -> str:
    one = statistics.median(fan["one"])

    def versus_one(kind: str) -> str:
        # Each trial's pushes ran back to back, so per-trial ratios cancel out most of the
        # machine's background load; their median and range are reported.
        ratios = sorted(t / o for t, o in zip(fan[kind], fan["one"], strict=True))
        return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"

    low, high = min(pulls.fetches_per_blob), max(pulls.fetches_per_blob)
    fetched = str(low) if low == high else f"{low}-{high}"
    lines = [
        f"Image: {args.layers} fresh layers of {args.layer_mb} MiB of {args.content} data on "
        f"`cartridge/base`; {args.trials} trials; {os.cpu_count()} CPUs; load average "
        f"{load[0]:.1f} before, {load[1]:.1f} after.",
        "",
        "| push | median seconds | vs. one replica: median of per-trial ratios (range) |",
        "| --- | ---: | ---: |",
        f"| `docker push` to 1 replica | {one:.2f} | 1.00x |",
        f"| `docker push` to 1 + Cartridge replication to 2 more | "
        f"{statistics.median(fan['three']):.2f} | {versus_one('three')} |",
        f"| `docker push` to each of 3 replicas (naive) | {statistics.median(fan['naive']):.2f} | "
        f"{versus_one('naive')} |",
        "",
        f"Herd: {args.pulls} concurrent pulls (manifest + {pulls.blobs} blobs, "
        f"{pulls.image_mb:.1f} MiB compressed, digests checked).",
        "",
        "| pulls | wall time, aggregate throughput | fetches per blob from the replicas |",
        "| --- | ---: | ---: |",
        f"| straight from one registry | {pulls.direct.describe()} | {args.pulls} |",
        f"| through the proxy, cold cache | {pulls.cold.describe()} | {fetched} |",
        f"| through the proxy, warm cache | {pulls.warm.describe()} | 0 |",
        "",
        f"Proxy wall time vs. direct: cold {pulls.cold.seconds / pulls.direct.seconds:.2f}x, "
        f"warm {pulls.warm.seconds / pulls.direct.seconds:.2f}x.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--layer-mb", type=int, default=16)
    parser.add_argument("--pulls", type=int, default=50)
    parser.add_argument(
        "--content",
        choices=["random", "text"],
        default="random",
        help="layer data: random bytes (incompressible, the worst case for replication) or "
        "base64 text (docker push compresses it)",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cartridge-bench-") as tmp:
        work = Path(tmp)
        with registry_cluster(work / "registries", count=3) as cluster:
            os.environ.update(
                {
                    "CARTRIDGE_DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
                    "CARTRIDGE_REGISTRY_URL": cluster[0].host,
                }
            )
            reset_caches()
            migrate.upgrade(os.environ["CARTRIDGE_DATABASE_URL"])
            with session_scope() as session:
                session.add_all(
                    Registry(name=r.name, url=r.host, required=True) for r in cluster.replicas
                )
            fan = fan_out(args, cluster)
            pulls = herd(args, cluster, work)
    print(report(args, fan, pulls, (load_before, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
