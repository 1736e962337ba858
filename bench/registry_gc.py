"""Retention and garbage collection benchmark: N images over 3 replicas, pruned to a policy that
keeps about a quarter, then each replica garbage-collected in turn while a pull loop runs through
the caching proxy.

    python3 bench/registry_gc.py [--images 2000] [--layer-kb 64] [--keep 0.25]

Runs three `docker-registry` replicas, `cartridge proxy serve`'s supervisor (nginx) and an SQLite
database in a temporary directory. Images are uploaded through the registry API (a fresh random
layer and config each, one manifest per image) to replica 1 and copied by Cartridge's replication
to the others, as builds are. Prints a Markdown report: prune and deletion time, per replica the
collection time and bytes reclaimed, and how many pulls failed during it (target: none).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import select  # noqa: E402

from app import migrate  # noqa: E402
from app.config import get_settings  # noqa: E402
from app.db import reset_caches, session_scope  # noqa: E402
from app.models import (  # noqa: E402
    Build,
    Image,
    ImageDeletion,
    Push,
    PushDecision,
    Registry,
    Repository,
)
from app.models.base import utcnow  # noqa: E402
from app.registries.distribution import DOCKER_MANIFEST  # noqa: E402
from app.registries.gc import collect_garbage  # noqa: E402
from app.registries.proxy_supervisor import ProxySupervisor  # noqa: E402
from app.registries.replication import replicate_image  # noqa: E402
from app.retention.service import apply  # noqa: E402
from tests.support.registry import RunningRegistry  # noqa: E402
from tests.support.server import free_port  # noqa: E402
from workers.retention import delete_from_replica  # noqa: E402

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def upload_blob(http: httpx.Client, registry: str, path: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = http.post(f"http://{registry}/v2/{path}/blobs/uploads/")
    started.raise_for_status()
    location = started.headers["Location"]
    url = location if location.startswith("http") else f"http://{registry}{location}"
    put = http.put(httpx.URL(url).copy_add_param("digest", digest), content=data)
    put.raise_for_status()
    return digest


def upload_image(http: httpx.Client, registry: str, path: str, layer_kb: int) -> dict[str, object]:
    layer = os.urandom(layer_kb * 1024)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex}
    ).encode()
    layer_digest = upload_blob(http, registry, path, layer)
    config_digest = upload_blob(http, registry, path, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": config_digest},
            "layers": [{"mediaType": LAYER_TYPE, "size": len(layer), "digest": layer_digest}],
        }
    ).encode()
    tag = uuid.uuid4().hex
    put = http.put(
        f"http://{registry}/v2/{path}/manifests/{tag}",
        content=manifest,
        headers={"Content-Type": DOCKER_MANIFEST},
    )
    put.raise_for_status()
    return {
        "tag": tag,
        "digest": put.headers["Docker-Content-Digest"],
        "config_digest": config_digest,
        "layers": [{"digest": layer_digest, "size": len(layer), "media_type": LAYER_TYPE}],
        "size": len(layer) + len(config),
    }


def storage_bytes(registry: RunningRegistry) -> int:
    root = registry.directory / "storage"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def populate(args: argparse.Namespace, r1: RunningRegistry) -> int:
    """Uploads and records the images, all on branch main of one repository, two months old;
    every `1/keep`-th is pinned so the policy keeps about `keep` of them."""
    path = "bench/retained"
    every = max(1, round(1 / args.keep))
    with session_scope() as session:
        repository = Repository(full_name="bench/retained", clone_url="-", image_name=path)
        session.add(repository)
        session.flush()
        repository_id = repository.id
    with httpx.Client(timeout=60) as http, ThreadPoolExecutor(8) as pool:
        uploads = list(
            pool.map(lambda _: upload_image(http, r1.host, path, args.layer_kb), range(args.images))
        )
    with session_scope() as session:
        for n, uploaded in enumerate(uploads):
            build = Build(
                repository_id=repository_id, sha=uuid.uuid4().hex + "0" * 8, status="succeeded"
            )
            session.add(build)
            session.flush()
            session.add(
                Push(
                    repository_id=repository_id,
                    ref="refs/heads/main",
                    branch="main",
                    before_sha="0" * 40,
                    after_sha=build.sha,
                    build_id=build.id,
                    decision=PushDecision.BUILT,
                )
            )
            session.add(
                Image(
                    build_id=build.id,
                    name=path,
                    tag=str(uploaded["tag"]),
                    manifest_digest=str(uploaded["digest"]),
                    config_digest=str(uploaded["config_digest"]),
                    media_type=DOCKER_MANIFEST,
                    size=int(uploaded["size"]),  # type: ignore[call-overload]
                    layers=uploaded["layers"],
                    pinned=n % every == 0,
                    created_at=utcnow() - timedelta(days=60),
                )
            )
    with session_scope() as session:
        image_ids = list(session.scalars(select(Image.id)))
    for image_id in image_ids:
        if not replicate_image(image_id).quorum_met:
            raise RuntimeError(f"image {image_id} did not reach every replica")
    return len(image_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--layer-kb", type=int, default=64)
    parser.add_argument("--keep", type=float, default=0.25)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cartridge-bench-gc-") as tmp:
        work = Path(tmp)
        replicas = [RunningRegistry(work / f"r{i}", name=f"r{i}") for i in (1, 2, 3)]
        for replica in replicas:
            replica.start()
        proxy = f"127.0.0.1:{free_port()}"
        os.environ.update(
            {
                "CARTRIDGE_DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
                "CARTRIDGE_REGISTRY_URL": replicas[0].host,
                "CARTRIDGE_RETENTION_KEEP_LAST": "1",
                "CARTRIDGE_RETENTION_KEEP_DAYS": "0",
                "CARTRIDGE_PROXY_HOST": proxy,
                "CARTRIDGE_PROXY_RUNTIME_DIR": str(work / "proxy"),
                "CARTRIDGE_PROXY_CACHE_PATH": str(work / "proxy-cache"),
                "CARTRIDGE_PROXY_REFRESH_SECONDS": "0.5",
                "CARTRIDGE_PROXY_TAG_CACHE_SECONDS": "0",
                "CARTRIDGE_PROXY_WORKER_USER": "root",
            }
        )
        reset_caches()
        migrate.upgrade(os.environ["CARTRIDGE_DATABASE_URL"])
        with session_scope() as session:
            session.add_all(Registry(name=r.name, url=r.host) for r in replicas)
        started = time.perf_counter()
        total = populate(args, replicas[0])
        populate_seconds = time.perf_counter() - started
        before = [storage_bytes(r) for r in replicas]

        started = time.perf_counter()
        with session_scope() as session:
            deleting = apply(session, get_settings(), limit=total)
        prune_seconds = time.perf_counter() - started
        with session_scope() as session:
            deletion_ids = list(session.scalars(select(ImageDeletion.id)))
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(delete_from_replica, deletion_ids))
        delete_seconds = time.perf_counter() - started

        with session_scope() as session:
            kept_tag = session.scalars(select(Image.tag).where(Image.deleting_at.is_(None))).first()
        supervisor = ProxySupervisor(get_settings())
        stop = threading.Event()
        supervisor.apply_once()  # nginx is up before the pull loop starts
        proxy_thread = threading.Thread(target=supervisor.run, args=(stop,))
        proxy_thread.start()
        pulls: list[int] = []
        pulling = threading.Event()
        pulling.set()

        def pull_loop() -> None:
            url = f"http://{proxy}/v2/bench/retained/manifests/{kept_tag}"
            with httpx.Client(timeout=10) as http:
                while pulling.is_set():
                    try:
                        status = http.get(url, headers={"Accept": DOCKER_MANIFEST}).status_code
                    except httpx.HTTPError:
                        status = 0
                    pulls.append(status)

        loop = threading.Thread(target=pull_loop)
        loop.start()
        rows = []
        try:
            # r1 is the push replica: builds would be pointed elsewhere first; here they are
            # pointed at r2 while r1 is collected, then back.
            for index, replica in enumerate(replicas):
                push_to = replicas[1 if index == 0 else 0]
                os.environ["CARTRIDGE_REGISTRY_URL"] = push_to.host
                get_settings.cache_clear()
                pid_file = work / f"{replica.name}.pid"
                assert replica.process is not None
                restart = (
                    f"sh -c 'docker-registry serve {replica.directory / 'config.yml'} "
                    f">>{replica.log_path} 2>&1 & echo $! > {pid_file}'"
                )
                pulls_before = len(pulls)
                failures_before = sum(1 for p in pulls if p != 200)
                started = time.perf_counter()
                report = collect_garbage(
                    replica.name,
                    get_settings(),
                    config=replica.directory / "config.yml",
                    stop=f"kill {replica.process.pid}",
                    start=restart,
                    say=lambda _line: None,
                    proxy_wait_seconds=15,
                )
                seconds = time.perf_counter() - started
                rows.append(
                    (
                        replica.name,
                        seconds,
                        before[index] - storage_bytes(replica),
                        report.blobs_deleted,
                        len(pulls) - pulls_before,
                        sum(1 for p in pulls if p != 200) - failures_before,
                    )
                )
        finally:
            pulling.clear()  # the pulls stop before the proxy does
            loop.join(30)
            stop.set()
            proxy_thread.join(30)
            for replica in replicas:
                replica.stop()
                pid_file = work / f"{replica.name}.pid"
                if pid_file.exists():
                    os.system(f"kill {pid_file.read_text().strip()} 2>/dev/null")  # noqa: S605
    done = results.count("done")
    print(f"## Retention and GC: {total} images over 3 replicas, {args.layer_kb} KiB layers\n")
    print(f"- populate (upload to r1, replicate to r2 and r3): {populate_seconds:.1f} s")
    print(
        f"- prune: {len(deleting)} of {total} images marked for deletion in {prune_seconds:.2f} s"
    )
    print(f"- deletes by digest: {done} of {len(results)} done in {delete_seconds:.1f} s")
    print(f"- load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}\n")
    print(
        "| replica | GC time (s) | bytes reclaimed | blobs deleted | pulls during | failed pulls |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, seconds, reclaimed, blobs, during, failed in rows:
        print(f"| {name} | {seconds:.1f} | {reclaimed:,} | {blobs} | {during} | {failed} |")


if __name__ == "__main__":
    main()
