"""The build network's deny list: entries as operators write them, the control plane derived from
the settings, and the rules they become."""

from __future__ import annotations

import ipaddress

import pytest

from app.config import Settings
from workers.pipeline import deny, firewall
from workers.pipeline.deny import Denied
from workers.pipeline.outcomes import BuildErrored


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("127.0.0.1:5432", ("127.0.0.1", 5432)),
        ("db.internal:5432", ("db.internal", 5432)),
        ("db.internal", ("db.internal", None)),
        ("10.0.0.0/8", ("10.0.0.0/8", None)),
        ("10.0.0.0/8:6379", ("10.0.0.0/8", 6379)),
        ("postgresql+psycopg://cartridge:pw@10.1.2.3:5433/cartridge", ("10.1.2.3", 5433)),
        ("postgresql+psycopg://cartridge@db/cartridge", ("db", 5432)),
        ("redis://redis:6379/0", ("redis", 6379)),
        ("https://cartridge.example.com/", ("cartridge.example.com", 443)),
        ("[::1]:5432", ("::1", 5432)),
        ("::1", ("::1", None)),
    ],
)
def test_entries_read_as_operators_write_them(entry: str, parsed: tuple[str, int | None]) -> None:
    assert deny.parse(entry) == parsed


@pytest.mark.parametrize("entry", ["10.0.0.1:http", "10.0.0.1:0", "10.0.0.1:70000", ":5432"])
def test_unreadable_entries_stop_builds(entry: str) -> None:
    with pytest.raises(BuildErrored, match="deny list entry"):
        deny.resolve([(entry, "CARTRIDGE_BUILD_DENY")])


def test_the_control_plane_is_derived_from_the_settings() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://cartridge@10.0.0.5/cartridge",
        broker_url="redis://10.0.0.6:6379/0",
        registry_url="http://10.0.0.11:5000",
        registry_push_url="10.0.0.10:5001",
        registries=[{"name": "r4", "url": "10.0.0.14:5000"}],
        proxy_host="10.0.0.20:5080",
        proxy_listen="10.0.0.21:5080",
        public_url="https://10.0.0.30",
        docker_host="tcp://10.0.0.40:2376",
        build_deny=["192.0.2.0/24"],
    )
    entries = deny.control_plane(settings, ["http://10.0.0.12:5000", "10.0.0.13"])
    denied = {(entry.describe(), entry.why) for entry in deny.resolve(entries)}
    assert denied == {
        ("10.0.0.5/32:5432", "the database (CARTRIDGE_DATABASE_URL)"),
        ("10.0.0.6/32:6379", "the broker (CARTRIDGE_BROKER_URL)"),
        ("10.0.0.11/32:5000", "the registry (CARTRIDGE_REGISTRY_URL)"),
        ("10.0.0.10/32:5001", "the registry (CARTRIDGE_REGISTRY_PUSH_URL)"),
        ("10.0.0.12/32:5000", "a registry replica"),
        ("10.0.0.13/32:443", "a registry replica"),
        ("10.0.0.14/32:5000", "a registry replica"),
        ("10.0.0.20/32:5080", "the pull proxy (CARTRIDGE_PROXY_HOST)"),
        ("10.0.0.21/32:5080", "the pull proxy (CARTRIDGE_PROXY_LISTEN)"),
        ("10.0.0.30/32:443", "the API (CARTRIDGE_PUBLIC_URL)"),
        ("10.0.0.40/32:2376", "the Docker engine (CARTRIDGE_DOCKER_HOST)"),
        ("169.254.169.254/32", "the cloud metadata service"),
        ("192.0.2.0/24", "CARTRIDGE_BUILD_DENY"),
    }


def test_single_node_defaults_deny_this_hosts_registry_proxy_and_api() -> None:
    settings = Settings(database_url="", broker_url="")  # SQLite and the filesystem broker
    denied = deny.resolve(deny.control_plane(settings, ["127.0.0.1:5000"]))
    assert [entry.describe() for entry in denied] == [
        "this host:5000",
        "this host:5080",
        "this host:8000",
        "169.254.169.254/32",
    ]


def test_addresses_of_this_host_mean_the_host_itself() -> None:
    denied = deny.resolve([("0.0.0.0:6379", "x"), ("localhost:5432", "y"), ("0.0.0.0/0:25", "z")])
    assert [(entry.local, entry.port) for entry in denied] == [
        (True, 6379),
        (True, 5432),
        (False, 25),
    ]


def test_a_name_that_does_not_resolve_stops_builds() -> None:
    with pytest.raises(BuildErrored, match=r"^no-such-host\.invalid, the database"):
        deny.resolve([("no-such-host.invalid:5432", "the database")])


def test_rules_refuse_only_traffic_from_the_build_bridge() -> None:
    bridge = "cb-0123456789ab"
    chain_in, chain_fwd = firewall.chains(bridge)
    assert len(chain_in) <= 28
    rules = firewall.ruleset(
        bridge,
        [
            Denied(ipaddress.IPv4Network("127.0.0.0/8"), 5000, True, "a registry replica"),
            Denied(ipaddress.IPv4Network("10.0.0.5/32"), 5432, False, "the database"),
            Denied(ipaddress.IPv4Network("169.254.169.254/32"), None, False, "metadata"),
        ],
    ).splitlines()
    assert rules == [
        "*filter",
        f":{chain_in} - [0:0]",
        f":{chain_fwd} - [0:0]",
        f"-A {chain_in} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
        f"-A {chain_fwd} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
        # this host's port 5000, on any of its addresses, and when the engine forwards it
        f"-A {chain_in} -p tcp --dport 5000 -j REJECT --reject-with tcp-reset",
        f"-A {chain_in} -p udp --dport 5000 -j REJECT --reject-with icmp-port-unreachable",
        f"-A {chain_fwd} -p tcp -m conntrack --ctstate DNAT --ctorigdstport 5000 "
        "-j REJECT --reject-with tcp-reset",
        f"-A {chain_fwd} -p udp -m conntrack --ctstate DNAT --ctorigdstport 5000 "
        "-j REJECT --reject-with icmp-port-unreachable",
        f"-A {chain_in} -p tcp --dport 5432 -d 10.0.0.5/32 -j REJECT --reject-with tcp-reset",
        f"-A {chain_in} -p udp --dport 5432 -d 10.0.0.5/32 "
        "-j REJECT --reject-with icmp-port-unreachable",
        f"-A {chain_fwd} -p tcp --dport 5432 -d 10.0.0.5/32 -j REJECT --reject-with tcp-reset",
        f"-A {chain_fwd} -p udp --dport 5432 -d 10.0.0.5/32 "
        "-j REJECT --reject-with icmp-port-unreachable",
        f"-A {chain_in} -p tcp -d 169.254.169.254/32 -j REJECT --reject-with tcp-reset",
        f"-A {chain_in} -d 169.254.169.254/32 -j REJECT --reject-with icmp-admin-prohibited",
        f"-A {chain_fwd} -p tcp -d 169.254.169.254/32 -j REJECT --reject-with tcp-reset",
        f"-A {chain_fwd} -d 169.254.169.254/32 -j REJECT --reject-with icmp-admin-prohibited",
        "COMMIT",
    ]
