"""A real uvicorn server on a free loopback port, in a background thread."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

# Ports for servers that bind them a moment later (registries, nginx, PostgreSQL) are drawn at
# random from below the kernel's ephemeral range: outgoing connections of every process on the
# machine take their local ports from that range, and a port the kernel handed out with bind(0)
# may be taken by one before the server binds it. A random pick, checked free and never handed out
# twice by this process, keeps pytest-xdist workers and concurrent runs apart.
LOWEST_PORT = 10_000
_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port() -> int:
    """A loopback TCP port that is free now, for a server to bind shortly."""
    highest = _ephemeral_range_start() - 1
    tries = 200 if highest - LOWEST_PORT > 1000 else 0
    with _lock:
        for _ in range(tries):
            port = random.randint(LOWEST_PORT, highest)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
        # No room below the ephemeral range on this machine: let the kernel choose.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        _handed_out.add(port)
        return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_range_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
