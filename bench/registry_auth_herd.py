"""Authenticated herd benchmark: 50 concurrent pulls through the pull proxy with registry auth on
(`auth_request` to Cartridge, token replicas) against the same herd through the open proxy.

    python3 bench/registry_auth_herd.py [--trials 5] [--layers 4] [--layer-mb 8] [--pulls 50]

Runs Cartridge's API (uvicorn, SQLite) as the token realm, two `docker-registry` replicas with
token auth and two open ones holding the same image, and nginx with the config Cartridge
generates for each. Each trial starts both proxies with empty caches and runs, in alternating
order, a herd against each: every client first gets a registry token from the realm with one
shared API token (as `docker pull` does after the proxy's challenge; the open herd skips that),
then fetches the manifest by digest and every blob, checking digests. Reports the p50/p99 of a
whole pull, cold (fresh cache) and warm, and how many blob fetches and auth checks reached
upstream. Prints Markdown.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import docker as docker_py  # noqa: E402
import httpx  # noqa: E402

from app import migrate  # noqa: E402
from app.auth.service import create_token  # noqa: E402
from app.config import get_settings  # noqa: E402
from app.db import reset_caches, session_scope  # noqa: E402
from app.main import create_app  # noqa: E402
from app.registries.distribution import DOCKER_MANIFEST, accept_header  # noqa: E402
from app.registries.proxy import Upstream, render  # noqa: E402
from app.registry_auth.client import registry_client_auth  # noqa: E402
from app.registry_auth.replica_config import distribution_auth_section  # noqa: E402
from tests.support.registry import RunningRegistry  # noqa: E402
from tests.support.registry_cluster import build_image, docker, nginx_proxy  # noqa: E402
from tests.support.server import free_port, serve  # noqa: E402
from workers.pipeline.publish import engine_credentials  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def herd(
    proxy: str,
    repository: str,
    urls: list[tuple[str, str]],
    pulls: int,
    *,
    realm: str | None,
    api_token: str | None,
) -> list[float]:
    """Seconds per pull for `pulls` concurrent clients."""
    start_together = threading.Barrier(pulls)
    basic = base64.b64encode(f"deploy:{api_token}".encode()).decode()

    def one(_: int) -> float:
        with httpx.Client(timeout=300) as client:
            start_together.wait()
            started = time.perf_counter()
            headers = {"Accept": accept_header(DOCKER_MANIFEST)}
            if realm:
                answer = client.get(
                    f"{realm}/auth/token",
                    params={
                        "service": "cartridge-registry",
                        "scope": f"repository:{repository}:pull",
                    },
                    headers={"Authorization": f"Basic {basic}"},
                )
                answer.raise_for_status()
                headers["Authorization"] = f"Bearer {answer.json()['token']}"
            for path, digest in urls:
                response = client.get(f"http://{proxy}/v2/{repository}/{path}", headers=headers)
                response.raise_for_status()
                if "sha256:" + hashlib.sha256(response.content).hexdigest() != digest:
                    raise RuntimeError(f"{path} served the wrong bytes")
            return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=pulls) as pool:
        return list(pool.map(one, range(pulls)))


def push(registry: RunningRegistry, local: str, repository: str, tag: str) -> None:
    remote = f"{registry.host}/{repository}"
    docker("tag", local, f"{remote}:{tag}")
    try:
        events = list(
            docker_py.APIClient().push(
                remote,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=engine_credentials(repository),
            )
        )
        errors = [e for e in events if "error" in e]
        if errors:
            raise RuntimeError(f"push to {registry.host}: {errors}")
    finally:
        docker("rmi", f"{remote}:{tag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--layer-mb", type=int, default=8)
    parser.add_argument("--pulls", type=int, default=50)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    results: dict[str, list[float]] = {
        k: [] for k in ("open cold", "auth cold", "open warm", "auth warm")
    }
    blob_fetches: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="cartridge-bench-") as tmp:
        work = Path(tmp)
        os.environ.update(
            {
                "CARTRIDGE_DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
                "CARTRIDGE_STATE_DIR": str(work / "state"),
                "CARTRIDGE_REGISTRY_AUTH": "token",
            }
        )
        reset_caches()
        get_settings.cache_clear()
        migrate.upgrade(os.environ["CARTRIDGE_DATABASE_URL"])
        with session_scope() as session:
            _, api_token = create_token(session, "bench", "read")
        with serve(create_app()) as realm:
            os.environ["CARTRIDGE_REGISTRY_AUTH_REALM"] = f"{realm}/auth/token"
            os.environ["CARTRIDGE_PROXY_AUTH_URL"] = realm
            get_settings.cache_clear()
            section = distribution_auth_section(get_settings())
            secured = [RunningRegistry(work / f"s{i}", extra_config=section) for i in range(2)]
            open_ = [RunningRegistry(work / f"o{i}") for i in range(2)]
            for registry in (*secured, *open_):
                registry.start()
            try:
                repository = f"bench/auth-{uuid.uuid4().hex[:8]}"
                tag = uuid.uuid4().hex
                local = f"cartridge-bench/auth:{tag}"
                build_image(local, layers=args.layers, layer_bytes=args.layer_mb << 20)
                for registry in (*secured, *open_):
                    push(registry, local, repository, tag)
                docker("rmi", local)
                manifest = httpx.get(
                    f"{secured[0].url}/v2/{repository}/manifests/{tag}",
                    headers={"Accept": accept_header(DOCKER_MANIFEST)},
                    auth=registry_client_auth(),
                )
                manifest.raise_for_status()
                digest = manifest.headers["Docker-Content-Digest"]
                document = manifest.json()
                blobs = [document["config"]["digest"], *(x["digest"] for x in document["layers"])]
                size = sum(int(x["size"]) for x in document["layers"])
                urls = [(f"manifests/{digest}", digest), *((f"blobs/{b}", b) for b in blobs)]

                for trial in range(args.trials):
                    order = ["open", "auth"] if trial % 2 == 0 else ["auth", "open"]
                    for kind in order:
                        settings = get_settings().model_copy(
                            update={"registry_auth": "token" if kind == "auth" else "none"}
                        )
                        replicas = secured if kind == "auth" else open_
                        directory = work / f"proxy-{kind}-{trial}"
                        port = free_port()
                        config = render(
                            [Upstream(r.host) for r in replicas],
                            settings.model_copy(update={"proxy_listen": f"127.0.0.1:{port}"}),
                            runtime_dir=directory / "runtime",
                            cache_path=directory / "cache",
                        )
                        before = [len(r.requests()) for r in replicas]
                        with nginx_proxy(directory, port, config) as proxy:
                            credentials = {
                                "realm": realm if kind == "auth" else None,
                                "api_token": api_token if kind == "auth" else None,
                            }
                            results[f"{kind} cold"] += herd(
                                proxy.host, repository, urls, args.pulls, **credentials
                            )
                            results[f"{kind} warm"] += herd(
                                proxy.host, repository, urls, args.pulls, **credentials
                            )
                        if kind == "auth":
                            for r, seen in zip(replicas, before, strict=True):
                                blob_fetches.update(
                                    path
                                    for method, path, status in r.requests()[seen:]
                                    if method == "GET" and status == 200 and "/blobs/" in path
                                )
            finally:
                for registry in (*secured, *open_):
                    registry.stop()

    print(
        f"Image: {size / (1 << 20):.1f} MiB compressed, {len(blobs)} blobs; "
        f"{args.pulls} concurrent pulls, {args.trials} trials of each (cold, then warm); "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.\n"
    )
    print("| herd | p50 pull | p99 pull |")
    print("| --- | ---: | ---: |")
    for kind, times in results.items():
        print(f"| {kind} | {statistics.median(times):.2f} s | {percentile(times, 0.99):.2f} s |")
    for phase in ("cold", "warm"):
        ratio = percentile(results[f"auth {phase}"], 0.99) / percentile(
            results[f"open {phase}"], 0.99
        )
        print(f"\np99 authenticated / open, {phase}: {ratio:.2f}x")
    per_blob = {b: blob_fetches[f"/v2/{repository}/blobs/{b}"] / args.trials for b in blobs}
    fetched = sorted(set(per_blob.values()))
    print(f"\nBlob fetches from the secured replicas per trial, per blob: {fetched}")


if __name__ == "__main__":
    main()
