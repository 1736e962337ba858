"""The build network on the real engine and the host's firewall: a compile reaches an allowed
address and is refused the registry replicas, however they are named; with no egress it reaches
nothing. Every target is the test's own (servers on the build bridge's host address, a container
published there), and the network and its rules are removed afterwards."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Build, Registry, Repository
from tests.builds.helpers import log_of, reload, sample_files
from tests.support.server import free_port
from workers.pipeline import firewall, network
from workers.pipeline.image_build import docker_api

PushCommit = Callable[..., str]
MakeBuild = Callable[[Repository, str], Build]
RunBuild = Callable[[int], str]

PROBE = """#!/bin/sh
probe() {
  if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$2" "$3" > /tmp/probe 2>&1 && [ -s /tmp/probe ]
  then echo "probe $1: reached"
  else echo "probe $1: refused ($(head -c 100 /tmp/probe))"
  fi
}
"""


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello\n")

    def log_message(self, *_args: object) -> None:
        pass


@dataclass
class Targets:
    name: str  # the build network
    bridge: str
    gateway: str  # the build host's address on the bridge
    allowed: int  # a server's port nothing denies
    replica_by_loopback: int  # a replica container's published port; the replica is 127.0.0.1:PORT
    replica_by_address: int  # a replica server's port; the replica is named GATEWAY:PORT

    def probes(self) -> str:
        """A compile that probes each target, then fails: the build ends before any push, so
        the replicas registered here never see one."""
        probes = "".join(
            f"probe {what} {self.gateway} {port}\n"
            for what, port in (
                ("allowed", self.allowed),
                ("replica-by-loopback", self.replica_by_loopback),
                ("replica-by-address", self.replica_by_address),
            )
        )
        return f"{PROBE}{probes}exit 3\n"


def _serve(address: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def targets(
    session: Session, set_build_env: Callable[..., None], base_image: str
) -> Iterator[Targets]:
    """A network of this test's own, two registry replicas reachable from it and one allowed
    server, all on the build host's address on the network's bridge. Whatever was created is
    removed afterwards, also when creating the rest failed."""
    name = f"cartridge-test-{uuid.uuid4().hex[:8]}"
    container = f"cartridge-test-replica-{uuid.uuid4().hex[:8]}"
    api = docker_api(None)
    with ExitStack() as cleanup:
        cleanup.callback(network.remove, api, name)
        bridge = network.ensure_network(api, name)
        gateway = api.inspect_network(name)["IPAM"]["Config"][0]["Gateway"]
        allowed = _serve(gateway)
        cleanup.callback(allowed.shutdown)
        replica_server = _serve(gateway)
        cleanup.callback(replica_server.shutdown)
        published = free_port()
        httpd = [base_image, "busybox", "httpd", "-f", "-p", "8000", "-h", "/etc"]
        publish = ["-p", f"{gateway}:{published}:8000"]
        cleanup.callback(
            subprocess.run, ["docker", "rm", "-f", container], check=False, capture_output=True
        )
        run = ["docker", "run", "-d", "--rm", "--name", container, *publish, *httpd]
        subprocess.run(run, check=True, capture_output=True)
        replica_port = int(replica_server.server_address[1])
        session.add_all(
            [
                Registry(name="by-loopback", url=f"127.0.0.1:{published}", required=False),
                Registry(name="by-address", url=f"{gateway}:{replica_port}", required=False),
            ]
        )
        session.commit()
        set_build_env(build_network=name, build_egress="internet", build_firewall="iptables")
        yield Targets(
            name=name,
            bridge=bridge,
            gateway=gateway,
            allowed=int(allowed.server_address[1]),
            replica_by_loopback=published,
            replica_by_address=replica_port,
        )


def _probe_build(
    session: Session,
    run_build: RunBuild,
    repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
    targets: Targets,
) -> str:
    sha = push_commit(repository, sample_files({"container/compile": targets.probes()}))
    build = make_build(repository, sha)
    assert run_build(build.id) == "failed"
    build = reload(session, build)
    assert build.error == "container/compile exited with status 3 (see the log)"
    return log_of(session, build)


def test_a_compile_reaches_allowed_addresses_and_never_the_registry_replicas(
    session: Session,
    run_build: RunBuild,
    set_build_env: Callable[..., None],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
    targets: Targets,
) -> None:
    # Without the rules every target is reachable from the build network: the rules, and
    # nothing else, keep the compile from the replicas below.
    set_build_env(build_firewall="off")
    log = _probe_build(session, run_build, sample_repository, push_commit, make_build, targets)
    assert "probe allowed: reached" in log
    assert "probe replica-by-loopback: reached" in log
    assert "probe replica-by-address: reached" in log
    assert f"network: {targets.name} (internet; the deny list is left to the host's" in log

    set_build_env(build_firewall="iptables")
    log = _probe_build(session, run_build, sample_repository, push_commit, make_build, targets)

    assert "probe allowed: reached" in log
    assert "probe replica-by-loopback: refused (nc: can't connect to remote host" in log
    assert "probe replica-by-address: refused (nc: can't connect to remote host" in log
    assert "Connection refused" in log  # refused at once, not left to time out
    network_line = next(line for line in log.splitlines() if line.startswith("network: "))
    assert network_line.startswith(f"network: {targets.name} (internet, except this host:")
    assert f"this host:{targets.replica_by_loopback}" in network_line
    assert f"this host:{targets.replica_by_address}" in network_line
    assert "169.254.169.254/32" in network_line


def test_rules_are_applied_once_and_scoped_to_the_build_bridge(
    session: Session, targets: Targets
) -> None:
    api = docker_api(None)
    for _ in range(2):
        network.prepare(api, get_settings(), [f"127.0.0.1:{targets.replica_by_loopback}"])
    chain_in, chain_fwd = firewall.chains(targets.bridge)
    rules = subprocess.run(["iptables", "-S"], check=True, capture_output=True, text=True).stdout
    jumps = [
        line
        for line in rules.splitlines()
        if line.startswith("-A ") and line.endswith((f"-j {chain_in}", f"-j {chain_fwd}"))
    ]
    assert sorted(jumps) == sorted(
        [
            f"-A INPUT -i {targets.bridge} -j {chain_in}",
            f"-A DOCKER-USER -i {targets.bridge} -j {chain_fwd}",
        ]
    )
    # Every rule of ours sits in our chains, which only the bridge's traffic enters (other
    # tests running at the same time have chains of their own bridges).
    ours = [line for line in rules.splitlines() if chain_in in line or chain_fwd in line]
    inside = [line for line in ours if line not in jumps]
    assert inside
    assert all(line.split()[1] in (chain_in, chain_fwd) for line in inside)

    firewall.remove(targets.bridge)
    rules = subprocess.run(["iptables", "-S"], check=True, capture_output=True, text=True).stdout
    assert chain_in not in rules
    assert chain_fwd not in rules


def test_with_no_egress_a_compile_reaches_nothing(
    session: Session,
    run_build: RunBuild,
    set_build_env: Callable[..., None],
    sample_repository: Repository,
    push_commit: PushCommit,
    make_build: MakeBuild,
    targets: Targets,
) -> None:
    set_build_env(build_egress="none")
    log = _probe_build(session, run_build, sample_repository, push_commit, make_build, targets)
    assert "network: none (no network)" in log
    assert "probe allowed: refused (nc: can't connect to remote host" in log
    assert "probe replica-by-loopback: refused" in log
