"""`script/server` as a user runs it: a push webhook becomes a green build whose latest-green
image reference pulls through the pull proxy it started, on one machine with no other service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.git_server import git
from tests.support.github import encode, push_payload, webhook_headers
from tests.support.paths import REPO_ROOT
from tests.support.registry_cluster import docker
from tests.support.server import free_port
from workers.pipeline import network as build_network
from workers.pipeline.image_build import docker_api

pytestmark = pytest.mark.e2e
SECRET = "single-node-secret-0123456789"
STARTUP_SECONDS = 120
BUILD_SECONDS = 240


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ports = {name: free_port() for name in ("api", "registry", "proxy")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTRIDGE_")}
    env.update(
        {
            "CARTRIDGE_STATE_DIR": str(tmp_path / "state"),
            "CARTRIDGE_PORT": str(ports["api"]),
            "CARTRIDGE_REGISTRY_URL": f"127.0.0.1:{ports['registry']}",
            "CARTRIDGE_PROXY_HOST": f"127.0.0.1:{ports['proxy']}",
            # The temporary directory is root's alone; nginx workers run as root to enter it.
            "CARTRIDGE_PROXY_WORKER_USER": "root",
            "CARTRIDGE_BUILD_QUEUE": f"builds-{ports['api']}",
            "CARTRIDGE_DEFAULT_QUEUE": f"cartridge-{ports['api']}",
            # The default egress and firewall, on a build network of this run's own (removed
            # with its rules afterwards) rather than the host's shared `cartridge-build`.
            "CARTRIDGE_BUILD_NETWORK": f"cartridge-test-{ports['api']}",
        }
    )
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        ["bash", str(REPO_ROOT / "script" / "server")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(f"{api}/readyz"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"script/server did not come up:\n{_tail(tmp_path / 'server.log')}")
            time.sleep(0.5)
        yield {"api": api, "env": env, "proxy": env["CARTRIDGE_PROXY_HOST"], "log": tmp_path}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        build_network.remove(docker_api(None), env["CARTRIDGE_BUILD_NETWORK"])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _application(tmp_path: Path) -> tuple[Path, str]:
    work = tmp_path / "hello"
    (work / "container").mkdir(parents=True)
    compile_script = work / "container" / "compile"
    compile_script.write_text('#!/bin/sh\nset -e\necho "hello from $(cat REVISION)" > hello.txt\n')
    compile_script.chmod(0o755)
    (work / "container" / "roles.json").write_text(json.dumps({"web": "cat /app/hello.txt"}))
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "hello", cwd=work)
    return work, git("rev-parse", "HEAD", cwd=work)


def test_a_push_on_the_single_node_default_pulls_through_its_proxy(
    server: dict[str, Any], tmp_path: Path
) -> None:
    cartridge = str(REPO_ROOT / ".venv" / "bin" / "cartridge")
    token = subprocess.run(
        [cartridge, "token", "create", "single-node", "--scope", "admin"],
        env=server["env"],
        capture_output=True,
        text=True,
        check=True,
    )
    auth = {"Authorization": f"Bearer {token.stdout.strip().splitlines()[0]}"}
    work, sha = _application(tmp_path)
    api = server["api"]
    created = httpx.post(
        f"{api}/api/v1/repos",
        headers=auth,
        json={"full_name": "octo/hello", "clone_url": f"file://{work}", "webhook_secret": SECRET},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    body = encode(push_payload("octo/hello", after=sha, clone_url=f"file://{work}"))
    delivered = httpx.post(
        f"{api}/webhooks/github", content=body, headers=webhook_headers("push", body, SECRET)
    )
    assert delivered.status_code in (200, 201, 202), delivered.text

    deadline = time.monotonic() + BUILD_SECONDS
    latest = None
    while time.monotonic() < deadline:
        answer = httpx.get(f"{api}/api/v1/repos/octo/hello/branches/main/latest-green", timeout=10)
        if answer.status_code == 200:
            latest = answer.json()
            break
        time.sleep(1)
    if latest is None:
        state = server["log"] / "state"
        pytest.fail(
            f"no green build in {BUILD_SECONDS}s; builds: "
            f"{httpx.get(f'{api}/api/v1/builds', timeout=10).text}\n"
            f"worker log:\n{_tail(state / 'worker.log')}\nproxy log:\n{_tail(state / 'proxy.log')}"
        )
    reference = latest["image"]["reference"]
    assert reference.startswith(f"{server['proxy']}/")
    docker("pull", reference)
    try:
        output = docker("run", "--rm", "--entrypoint", "cat", reference, "/app/hello.txt")
        assert output.strip() == f"hello from {sha}"
    finally:
        docker("rmi", "-f", reference)
