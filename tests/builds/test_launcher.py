"""Roles runnable by name: the launcher, the process hierarchy and signals, on the real engine."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from app.config import Settings
from tests.builds.assembly import assemble, write_tree
from tests.builds.helpers import COMPILE
from tests.support import docker as docker_support
from tests.support.server import free_port
from workers.pipeline.outcomes import BuildFailed

# Each script is the application of one role; `ready` on stdout once its traps are set.
SCRIPTS = {
    # Prints pid, parent pid and command name of itself and each ancestor, read from /proc.
    "bin/tree": """#!/bin/sh
pid=$$
while [ "$pid" != 0 ]; do
  read -r stat < /proc/$pid/stat
  set -- $stat
  printf '%s %s %s\\n' "$1" "$4" "$2"
  pid=$4
done
""",
    "bin/traps": """#!/bin/sh
for signal in TERM QUIT INT HUP; do
  trap "echo $signal > /out/marker; exit 0" $signal
done
echo ready
while :; do sleep 0.05; done
""",
    # Leaves orphans behind: each `sh -c '... &'` exits at once, its sleep is re-parented to
    # pid 1 and exits later. Reports each orphan's parent while it lives and its state after.
    "bin/orphans": """#!/bin/sh
pids=
for i in 1 2 3 4 5; do
  pids="$pids $(sh -c 'sleep 0.4 >/dev/null 2>&1 & echo $!')"
done
sleep 0.1
for pid in $pids; do
  read -r stat < /proc/$pid/stat
  set -- $stat
  echo "orphan $pid parent $4"
done
sleep 1
for pid in $pids; do
  if [ -e /proc/$pid/stat ]; then
    read -r stat < /proc/$pid/stat
    set -- $stat
    echo "left $pid state $3"
  else
    echo "reaped $pid"
  fi
done
""",
}
ROLES = {
    "web": "busybox httpd -f -p 8000 -h /app/public",
    "tree": "/app/bin/tree",
    "traps": "/app/bin/traps",
    "quits": {"command": "/app/bin/traps", "stop_signal": "QUIT"},
    "orphans": "/app/bin/orphans",
    "args": "printf '<%s>' first",
    "home": "echo $HOME",
    "fails": "exit 7",
    ".shell": "/bin/sh -l",
}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[str]:
    root = tmp_path_factory.mktemp("launcher")
    checkout = write_tree(
        root / "checkout",
        {
            "container/compile": COMPILE,
            "container/roles.json": json.dumps(ROLES),
            **SCRIPTS,
        },
        executable=tuple(SCRIPTS),
    )
    built, _ = assemble(checkout, Settings(state_dir=root / "state"), base_image=base_image)
    yield built.image_id
    docker_support.client().images.remove(built.image_id, force=True)


def test_docker_run_image_web_serves_http(image: str) -> None:
    with docker_support.serving(image, ["web"], 8000) as url:
        response = httpx.get(f"{url}/index.html")
    assert response.status_code == 200
    assert response.text.startswith("hello from ")


def test_the_process_hierarchy_is_init_shim_application(image: str) -> None:
    status, out, err = docker_support.run_role(image, ["tree"])
    assert (status, err) == (0, "")
    # Which numbers the engine hands out past pid 1 varies (2 and 3 on most hosts); the
    # ancestry does not: the application's parent is the shim, whose parent is init.
    application, shim, init = (line.split() for line in out.splitlines())
    assert init == ["1", "0", "(tini)"]
    assert shim[1:] == ["1", "(shim)"]
    assert application[1:] == [shim[0], "(tree)"]


def test_arguments_are_appended_as_words_and_the_command_line_is_expanded(image: str) -> None:
    assert docker_support.run_role(image, ["args", "two words", "$HOME", ""]) == (
        0,
        "<first><two words><$HOME><>",
        "",
    )
    assert docker_support.run_role(image, ["home"]) == (0, "/root\n", "")


def test_the_container_exits_with_the_application_status(image: str) -> None:
    assert docker_support.run_role(image, ["fails"])[0] == 7


@pytest.mark.parametrize("arguments", [[], ["nope"], ["../../bin/sh"], ["web/"]])
def test_no_role_or_an_unknown_one_lists_the_roles_and_fails(
    image: str, arguments: list[str]
) -> None:
    status, out, err = docker_support.run_role(image, arguments)
    assert status == 2
    assert out == ""
    first = err.splitlines()[0]
    if arguments:
        assert first == f"cartridge: {arguments[0]} is not a role of this image"
    else:
        assert first == "cartridge: no role given"
    assert "usage: docker run IMAGE ROLE [ARGUMENT...]" in err
    listed = [line.split()[0] for line in err.splitlines() if line.startswith("  ")]
    assert listed == sorted(ROLES)
    assert "  quits    /app/bin/traps  (stops on SIGQUIT)" in err
    assert "  .shell   /bin/sh -l  (helper)" in err


def _stop(image: str, role: str, tmp_path: Path) -> tuple[int, str, float]:
    """Starts `role`, waits for it to be ready, `docker stop`s it: (exit code, marker, seconds)."""
    out = tmp_path / role
    out.mkdir()
    container = docker_support.client().containers.run(
        image, [role], detach=True, network_mode="none", volumes={str(out): {"bind": "/out"}}
    )
    try:
        deadline = time.monotonic() + 20
        while b"ready" not in container.logs():
            assert time.monotonic() < deadline, container.logs()
            time.sleep(0.05)
        started = time.monotonic()
        container.stop(timeout=10)
        took = time.monotonic() - started
        status = container.wait(timeout=10)["StatusCode"]
    finally:
        container.remove(force=True)
    marker = out / "marker"
    return int(status), marker.read_text().strip() if marker.exists() else "", took


def test_docker_stop_delivers_sigterm_to_the_application(image: str, tmp_path: Path) -> None:
    status, marker, took = _stop(image, "traps", tmp_path)
    # Exit 0 is the trap's own: a stop timeout would have ended it with SIGKILL (137).
    assert (status, marker) == (0, "TERM")
    assert took < 5


def test_a_role_with_stop_signal_quit_receives_sigquit(image: str, tmp_path: Path) -> None:
    status, marker, _ = _stop(image, "quits", tmp_path)
    assert (status, marker) == (0, "QUIT")


def test_other_signals_are_forwarded_unchanged(image: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    container = docker_support.client().containers.run(
        image, ["quits"], detach=True, network_mode="none", volumes={str(out): {"bind": "/out"}}
    )
    try:
        deadline = time.monotonic() + 20
        while b"ready" not in container.logs():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        container.kill(signal="HUP")
        assert container.wait(timeout=10)["StatusCode"] == 0
    finally:
        container.remove(force=True)
    assert (out / "marker").read_text().strip() == "HUP"


def test_orphans_are_reparented_to_init_and_reaped(image: str) -> None:
    status, out, _ = docker_support.run_role(image, ["orphans"])
    assert status == 0
    lines = out.splitlines()
    orphans = [line for line in lines if line.startswith("orphan ")]
    assert len(orphans) == 5
    assert all(line.endswith(" parent 1") for line in orphans), out
    assert [line for line in lines if not line.startswith("orphan ")] == [
        f"reaped {line.split()[1]}" for line in orphans
    ]


def test_an_interactive_helper_role_gets_the_terminal(image: str) -> None:
    container = docker_support.client().containers.run(
        image,
        [".shell", "-c", "tty -s && echo has-tty; echo $0"],
        detach=True,
        tty=True,
        stdin_open=True,
        network_mode="none",
    )
    try:
        assert container.wait(timeout=20)["StatusCode"] == 0
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    assert "has-tty" in output


def test_the_launcher_adds_well_under_a_megabyte(image: str) -> None:
    api = docker_support.client().api
    history = api.history(image)
    # The launcher's binaries early, the role table late: the two layers copied to /cartridge/.
    layers = [layer for layer in history if layer["CreatedBy"].endswith(" in /cartridge/ ")]
    assert len(layers) == 2
    assert sum(layer["Size"] for layer in layers) < 800_000
    config = api.inspect_image(image)["Config"]
    assert config["Entrypoint"] == ["/cartridge/tini", "--", "/cartridge/launch"]
    assert not config["Cmd"]


def test_a_base_image_without_bin_sh_fails_the_build(tmp_path: Path, base_image: str) -> None:
    client = docker_support.client()
    tag = f"cartridge-test/no-shell-{free_port()}:latest"
    base = tmp_path / "base"
    base.mkdir()
    (base / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (base / "Dockerfile").write_text("FROM scratch\nCOPY busybox /busybox\n")
    client.images.build(path=str(base), tag=tag, rm=True)
    checkout = write_tree(
        tmp_path / "checkout",
        {"container/compile": COMPILE, "container/roles.json": '{"web": "x"}'},
    )
    try:
        with pytest.raises(BuildFailed) as failed:
            assemble(checkout, Settings(state_dir=tmp_path / "state"), base_image=tag)
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True)
    assert "the base image has no /bin/sh" in failed.value.message
