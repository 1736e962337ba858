"""`cartridge registry gc` on real replicas: the collected replica leaves the push set and the
proxy, its space comes back, pulls through the proxy never fail, and it returns to service."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from app.config import get_settings
from app.errors import Conflict
from app.models import Image, Registry, Repository
from app.registries.gc import collect_garbage
from app.registries.proxy_supervisor import ProxySupervisor
from app.registries.replication import replicate_image
from app.retention.service import apply
from tests.support.registry import RunningRegistry
from tests.support.registry_cluster import push_image
from tests.support.server import free_port
from workers.retention import delete_from_replica

pytestmark = pytest.mark.e2e


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[RunningRegistry, RunningRegistry]]:
    r1, r2 = (
        RunningRegistry(tmp_path / "r1", name="r1"),
        RunningRegistry(tmp_path / "r2", name="r2"),
    )
    r1.start()
    r2.start()
    pid_file = tmp_path / "r2-restarted.pid"
    try:
        yield r1, r2
    finally:
        r1.stop()
        r2.stop()
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], check=False)


def _storage_bytes(registry: RunningRegistry) -> int:
    return sum(p.stat().st_size for p in (registry.directory / "storage").rglob("*") if p.is_file())


def test_gc_reclaims_a_replica_while_pulls_through_the_proxy_keep_working(
    session: Session,
    configure: Callable[..., None],
    make_repository: Callable[..., Repository],
    replicas: tuple[RunningRegistry, RunningRegistry],
    repository_path: str,
    tmp_path: Path,
    record_image: Callable[..., Image],
) -> None:
    r1, r2 = replicas

    def record() -> Image:
        pushed = push_image(r1.host, repository_path, layers=2, layer_bytes=512 * 1024)
        image = record_image(pushed, repository=repository, branch="main", age=timedelta(days=60))
        assert replicate_image(image.id).quorum_met
        session.commit()
        return image

    proxy = f"127.0.0.1:{free_port()}"
    configure(
        registry_url=r1.host,
        retention_keep_last=1,
        retention_keep_days=0,
        proxy_host=proxy,
        proxy_runtime_dir=tmp_path / "proxy",
        proxy_cache_path=tmp_path / "proxy-cache",
        proxy_worker_user="root",
        proxy_refresh_seconds=0.3,
        proxy_tag_cache_seconds=0,
    )
    session.add_all([Registry(name="r1", url=r1.host), Registry(name="r2", url=r2.host)])
    repository = make_repository("octo/app", image_name=repository_path)
    old = record()
    kept = record()
    assert apply(session, get_settings(), limit=10) == [old.id]
    session.commit()
    for deletion_id in (1, 2):
        assert delete_from_replica(deletion_id) == "done"
    before = _storage_bytes(r2)

    supervisor = ProxySupervisor(get_settings())
    stop = threading.Event()
    supervisor.apply_once()  # nginx is up before the pull loop starts
    proxy_thread = threading.Thread(target=supervisor.run, args=(stop,))
    proxy_thread.start()
    pulls: list[int] = []
    errors: list[str] = []

    pulling = threading.Event()
    pulling.set()

    def pull_loop() -> None:
        # By tag, which the proxy revalidates upstream on every request (tag cache 0 s).
        accept = {"Accept": kept.media_type}
        url = f"http://{proxy}/v2/{repository_path}/manifests/{kept.tag}"
        while pulling.is_set():
            try:
                pulls.append(httpx.get(url, headers=accept, timeout=30).status_code)
            except httpx.HTTPError as exc:
                pulls.append(0)
                errors.append(repr(exc))

    try:
        loop = threading.Thread(target=pull_loop)
        loop.start()
        seen_during: list[str] = []

        def say(line: str) -> None:
            if line.startswith("stopping r2"):
                seen_during.append(supervisor.config_path.read_text())

        restart = (
            f"sh -c 'docker-registry serve {r2.directory / 'config.yml'} >>{r2.log_path} 2>&1 & "
            f"echo $! > {tmp_path / 'r2-restarted.pid'}'"
        )
        assert r2.process is not None
        report = collect_garbage(
            "r2",
            get_settings(),
            config=r2.directory / "config.yml",
            stop=f"kill {r2.process.pid}",
            start=restart,
            say=say,
            proxy_wait_seconds=10,
        )
    finally:
        # The pulls stop before the proxy does.
        pulling.clear()
        if "loop" in locals():
            loop.join(30)
        stop.set()
        proxy_thread.join(30)

    assert report.blobs_deleted > 0
    assert _storage_bytes(r2) < before
    assert r2.host not in seen_during[0]  # the proxy had left r2 out before it was stopped
    assert pulls
    assert set(pulls) == {200}, f"{pulls.count(200)} of {len(pulls)} pulls succeeded: {errors}"
    session.expire_all()
    row = session.get_one(Registry, 2)
    assert (row.maintenance, row.last_gc_report) == (False, report.describe())
    # r2 serves the image it kept.
    response = httpx.get(
        f"{r2.url}/v2/{repository_path}/manifests/{kept.manifest_digest}",
        headers={"Accept": kept.media_type},
        timeout=10,
    )
    assert response.status_code == 200


def test_gc_refuses_the_push_replica_and_the_last_one(
    session: Session,
    configure: Callable[..., None],
    replicas: tuple[RunningRegistry, RunningRegistry],
) -> None:
    r1, r2 = replicas
    configure(registry_url=r1.host)
    session.add_all([Registry(name="r1", url=r1.host), Registry(name="r2", url=r2.host)])
    session.commit()
    with pytest.raises(Conflict) as refused:
        collect_garbage("r1", get_settings(), config=Path("/dev/null"), stop=None, start=None)
    assert refused.value.code == "registry_gc_push_replica"
    session.get_one(Registry, 1).maintenance = True
    session.commit()
    with pytest.raises(Conflict) as last:
        collect_garbage("r2", get_settings(), config=Path("/dev/null"), stop=None, start=None)
    assert last.value.code == "registry_gc_last_replica"
