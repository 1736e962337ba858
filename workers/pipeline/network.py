"""The Docker network a build's containers run on (README, "Security model").

- `CARTRIDGE_BUILD_EGRESS=none`: no network at all (loopback inside the container only).
- `internet` (the default; dependency installs need it): a bridge network of Cartridge's own,
  `CARTRIDGE_BUILD_NETWORK` (`cartridge-build`), created on demand on each engine, with traffic
  between its containers off (one build cannot reach another's), and the deny list
  (`workers.pipeline.deny`) enforced on its bridge (`workers.pipeline.firewall`) before every build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import docker
import requests

from app.config import Settings
from workers.pipeline import deny, firewall
from workers.pipeline.outcomes import BuildErrored

LABEL = "dev.cartridge.build-network"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"


@dataclass(frozen=True)
class BuildNetwork:
    mode: str  # the engine's network mode for the build: a network name, or "none"
    bridge: str | None
    # What the rules deny; None when the host's own firewall is in charge of it.
    denied: tuple[deny.Denied, ...] | None

    def describe(self) -> str:
        if self.bridge is None:
            return "none (no network)"
        if self.denied is None:
            return f"{self.mode} (internet; the deny list is left to the host's firewall)"
        listed = ", ".join(entry.describe() for entry in self.denied)
        return f"{self.mode} (internet, except {listed})"


def prepare(api: docker.APIClient, settings: Settings, replica_urls: Iterable[str]) -> BuildNetwork:
    """The network for the next build, with its rules in place."""
    if settings.build_egress == "none" or settings.build_network == "none":
        return BuildNetwork(mode="none", bridge=None, denied=())
    bridge = ensure_network(api, settings.build_network)
    if settings.build_firewall == "off":
        return BuildNetwork(mode=settings.build_network, bridge=bridge, denied=None)
    denied = deny.resolve(deny.control_plane(settings, replica_urls))
    firewall.apply(bridge, denied)
    return BuildNetwork(mode=settings.build_network, bridge=bridge, denied=tuple(denied))


def bridge_name(network: str) -> str:
    """The Linux bridge of a network Cartridge creates (interface names have 15 characters)."""
    return "cb-" + hashlib.sha256(network.encode()).hexdigest()[:12]


def ensure_network(api: docker.APIClient, name: str) -> str:
    """Creates the network unless it exists; returns its bridge's name."""
    try:
        try:
            return _bridge_of(api.inspect_network(name))
        except docker.errors.NotFound:
            pass
        try:
            api.create_network(
                name,
                driver="bridge",
                options={
                    BRIDGE_NAME_OPTION: bridge_name(name),
                    "com.docker.network.bridge.enable_icc": "false",
                },
                labels={LABEL: "1"},
                check_duplicate=True,
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # another worker created it first
                raise
        return _bridge_of(api.inspect_network(name))
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BuildErrored(f"could not set up the build network {name}: {exc}") from exc


def _bridge_of(network: dict[str, object]) -> str:
    if network.get("Driver") != "bridge":
        raise BuildErrored(
            f"the build network {network.get('Name')} is a {network.get('Driver')} network; "
            "Cartridge needs a bridge network of its own (remove it, or name another one in "
            "CARTRIDGE_BUILD_NETWORK)"
        )
    options = network.get("Options")
    named = options.get(BRIDGE_NAME_OPTION) if isinstance(options, dict) else None
    return str(named) if named else f"br-{str(network['Id'])[:12]}"


def remove(api: docker.APIClient, name: str) -> None:
    """Removes the network and its rules (the network must have no containers)."""
    try:
        bridge = _bridge_of(api.inspect_network(name))
    except docker.errors.NotFound:
        return
    firewall.remove(bridge)
    api.remove_network(name)
