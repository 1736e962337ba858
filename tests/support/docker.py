"""Docker engine helpers for tests: running built images, finding and removing what tests made."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import docker
import httpx

from tests.support.server import free_port


def client() -> docker.DockerClient:
    return docker.from_env()


def run_once(image: str, command: list[str]) -> str:
    """Runs the program `command` in a fresh container of `image`, past the image's launcher
    (as `docker run --entrypoint`), and returns its output."""
    output = client().containers.run(
        image, command[1:], entrypoint=command[:1], remove=True, network_mode="none"
    )
    return output.decode() if isinstance(output, bytes) else str(output)


def run_role(image: str, arguments: list[str], **options: object) -> tuple[int, str, str]:
    """`docker run IMAGE ARGUMENT...` through the image's launcher: (exit code, stdout, stderr)."""
    container = client().containers.run(
        image, arguments, detach=True, network_mode="none", **options
    )
    try:
        status = container.wait(timeout=60)["StatusCode"]
        stdout = container.logs(stdout=True, stderr=False).decode()
        stderr = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    return int(status), stdout, stderr


@contextlib.contextmanager
def serving(image: str, command: list[str], container_port: int) -> Iterator[str]:
    """Runs `image` with the launcher arguments `command` (a role name first) and
    `container_port` published on 127.0.0.1 only; yields the URL once it answers."""
    port = free_port()
    container = client().containers.run(
        image,
        command,
        detach=True,
        ports={f"{container_port}/tcp": ("127.0.0.1", port)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        container.remove(force=True)


def container_running(container_id: str) -> bool:
    try:
        container = client().containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return bool(container.status in ("created", "running", "restarting", "paused"))


def remove_images(prefix: str) -> None:
    """Removes every local image tagged under `prefix` (e.g. a per-run registry host)."""
    api = client().api
    for image in api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefix):
                with contextlib.suppress(docker.errors.APIError):
                    api.remove_image(tag, force=True)
