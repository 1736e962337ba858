"""A second Docker engine on this machine, for tests and benchmarks of several build hosts."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker


@contextlib.contextmanager
def second_engine(images: tuple[str, ...] = ()) -> Iterator[str]:
    """Starts a dockerd on its own socket, data root and bridge, with no iptables rules, holding
    only `images` (copied from the default engine, as an operator loads them); yields its URL.

    Its bridge is one of its own: `--bridge none` would make dockerd delete the host's docker0,
    under the engine everything else uses."""
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is not installed")
    # A short path: the socket's must fit in sockaddr_un.
    root = Path(tempfile.mkdtemp(prefix="cartridge-engine-", dir="/tmp"))
    bridge = f"cbr-{uuid.uuid4().hex[:8]}"
    url = f"unix://{root / 'docker.sock'}"
    log = (root / "dockerd.log").open("wb")
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    process: subprocess.Popen[bytes] | None = None
    try:
        process = subprocess.Popen(
            [
                "dockerd",
                "--data-root", str(root / "data"),
                "--exec-root", str(root / "exec"),
                "--pidfile", str(root / "docker.pid"),
                "--host", url,
                "--bridge", bridge,
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--storage-driver", "overlay2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                client = docker.DockerClient(base_url=url, timeout=300)
                break
            except docker.errors.DockerException:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((root / "dockerd.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        default = docker.from_env(timeout=300)
        for image in images:
            client.api.load_image(b"".join(default.api.get_image(image)))
        yield url
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        subprocess.run(["umount", "-R", str(root / "exec")], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
