"""Rules on the build host that keep a build network's containers away from denied addresses.

Two chains of Cartridge's own per build bridge, in the filter table, reached only by packets that
come in on that bridge, so no other traffic of the host is ever matched:

- `CARTRIDGE-<hash>-IN`, jumped to from `INPUT`: connections to the build host itself. A denied
  address of the host (loopback, or one of its own addresses) is denied by port on every address
  of the host: a database that listens on 127.0.0.1 in the settings may listen on all of them.
- `CARTRIDGE-<hash>-FWD`, jumped to from `DOCKER-USER` (Docker's chain for rules of its users,
  first in `FORWARD`): connections routed elsewhere, and connections to ports the host publishes
  for containers when the engine forwards them by DNAT (userland proxy off) instead of accepting
  them itself.

Denied connections are refused at once (TCP reset, ICMP otherwise) rather than left to time out.
The chains are replaced atomically (`iptables-restore --noflush`), the jumps added once;
`remove()` takes both away. Applying the same rules again changes nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workers.pipeline.deny import Denied
from workers.pipeline.outcomes import BuildErrored

_LOCK_FILES = (Path("/run/lock/cartridge-build-firewall.lock"),)
_TIMEOUT_SECONDS = 30


class FirewallError(BuildErrored):
    """The rules could not be read or written (no iptables, no privilege, another namespace)."""


def chains(bridge: str) -> tuple[str, str]:
    """The two chain names of a bridge (iptables allows at most 28 characters)."""
    tag = hashlib.sha256(bridge.encode()).hexdigest()[:8]
    return f"CARTRIDGE-{tag}-IN", f"CARTRIDGE-{tag}-FWD"


def ruleset(bridge: str, denied: list[Denied]) -> str:
    """The chains' contents in `iptables-restore` syntax."""
    chain_in, chain_fwd = chains(bridge)
    lines = ["*filter", f":{chain_in} - [0:0]", f":{chain_fwd} - [0:0]"]
    # Replies to connections the rules let through (or the host opened) are never refused.
    for chain in (chain_in, chain_fwd):
        lines.append(f"-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN")
    for entry in denied:
        every_protocol = entry.port is None
        if entry.local:
            # Whatever reaches INPUT from the bridge is for the host: the port says enough.
            lines += _reject(chain_in, [], entry.port, every_protocol)
            # Only the engine's port forwarding DNATs traffic from the bridge to the host.
            forwarded = ["-m", "conntrack", "--ctstate", "DNAT"]
            if entry.port is not None:
                forwarded += ["--ctorigdstport", str(entry.port)]
            lines += _reject(chain_fwd, forwarded, None, every_protocol)
        else:
            destination = ["-d", str(entry.network)]
            lines += _reject(chain_in, destination, entry.port, every_protocol)
            lines += _reject(chain_fwd, destination, entry.port, every_protocol)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _reject(chain: str, match: list[str], port: int | None, every_protocol: bool) -> list[str]:
    """Rules refusing what `match` selects, to `port` if given: TCP with a reset, then UDP (or,
    with `every_protocol`, anything else) with ICMP."""
    dport = f" --dport {port}" if port is not None else ""
    selected = "".join(f" {word}" for word in match)
    rules = [f"-A {chain} -p tcp{dport}{selected} -j REJECT --reject-with tcp-reset"]
    if every_protocol:
        rules.append(f"-A {chain}{selected} -j REJECT --reject-with icmp-admin-prohibited")
    else:
        rules.append(
            f"-A {chain} -p udp{dport}{selected} -j REJECT --reject-with icmp-port-unreachable"
        )
    return rules


def apply(bridge: str, denied: list[Denied]) -> None:
    """Installs (or replaces) the bridge's rules."""
    chain_in, chain_fwd = chains(bridge)
    if not Path("/sys/class/net", bridge).exists():
        raise FirewallError(
            f"the build network's bridge {bridge} is not in this worker's network namespace, so "
            "its deny list cannot be enforced: run the worker on the build host itself (as "
            "root, or with CAP_NET_ADMIN and the host's network), or enforce the deny list in "
            "the host's own firewall and set CARTRIDGE_BUILD_FIREWALL=off"
        )
    with _locked():
        _iptables_restore(ruleset(bridge, denied))
        forward_parent = "DOCKER-USER" if _has_chain("DOCKER-USER") else "FORWARD"
        for parent, chain in (("INPUT", chain_in), (forward_parent, chain_fwd)):
            jump = [parent, "-i", bridge, "-j", chain]
            if not _iptables("-C", *jump, check=False):
                _iptables("-I", parent, "1", *jump[1:])


def remove(bridge: str) -> None:
    """Takes the bridge's rules away (nothing happens if there are none)."""
    chain_in, chain_fwd = chains(bridge)
    with _locked():
        for parent in ("INPUT", "DOCKER-USER", "FORWARD"):
            for chain in (chain_in, chain_fwd):
                while _iptables("-D", parent, "-i", bridge, "-j", chain, check=False):
                    pass
        for chain in (chain_in, chain_fwd):
            if _has_chain(chain):
                _iptables("-F", chain)
                _iptables("-X", chain)


def _has_chain(chain: str) -> bool:
    return _iptables("-S", chain, check=False)


def _iptables(*args: str, check: bool = True) -> bool:
    return _run(["iptables", "-w", str(_TIMEOUT_SECONDS), *args], check=check)


def _iptables_restore(rules: str) -> None:
    _run(["iptables-restore", "-w", str(_TIMEOUT_SECONDS), "--noflush"], stdin=rules)


def _run(command: list[str], *, check: bool = True, stdin: str | None = None) -> bool:
    try:
        done = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS + 5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirewallError(f"could not run {command[0]} for the build network: {exc}") from exc
    if done.returncode != 0 and check:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise FirewallError(
            f"{command[0]} refused the build network's rules: "
            f"{reason[-1] if reason else f'status {done.returncode}'} (the worker needs root or "
            "CAP_NET_ADMIN on the build host; CARTRIDGE_BUILD_FIREWALL=off leaves it to the host)"
        )
    return done.returncode == 0


@contextmanager
def _locked() -> Iterator[None]:
    """Workers of one host change the rules one at a time (iptables -w serializes single
    commands, not a check followed by an insert)."""
    candidates = [*_LOCK_FILES, Path(tempfile.gettempdir()) / "cartridge-build-firewall.lock"]
    for path in candidates:
        try:
            handle = path.open("a")
        except OSError:
            continue
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        return
    yield
