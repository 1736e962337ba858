"""`cartridge registry ...` through the API: replicas added, listed, probed, changed, removed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli.errors import EXIT_REFUSED, EXIT_UNREACHABLE
from app.models import Registry
from app.registries.queries import record_presence
from tests.cli.conftest import Run
from tests.support.factories import MakeBuild, MakeImage, MakeRepository
from tests.support.registry import run_registry
from tests.support.server import free_port


def test_replicas_are_added_listed_changed_and_removed(run: Run, session: Session) -> None:
    added = run("registry", "add", "r1", "127.0.0.1:5001")
    optional = run("registry", "add", "r2", "127.0.0.1:5002", "--optional")
    assert added.exit_code == optional.exit_code == 0, added.output + optional.output
    assert added.stdout == "registry r1 added (127.0.0.1:5001, required)\n"

    listed = run("registry", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "URL", "ROLE", "HEALTH", "MISSING", "CHECKED"]
    assert lines[1].split() == ["r1", "127.0.0.1:5001", "required", "healthy", "0", "never"]
    assert lines[2].split()[:3] == ["r2", "127.0.0.1:5002", "optional"]

    changed = run("registry", "set", "r2", "--required")
    assert changed.stdout == "registry r2: 127.0.0.1:5002, required\n"
    moved = run("registry", "set", "r2", "--url", "127.0.0.1:5012")
    assert moved.stdout == "registry r2: 127.0.0.1:5012, required\n"
    assert run("registry", "remove", "r1").stdout == "registry r1 removed\n"

    # What the commands did is what the API recorded.
    session.expire_all()
    rows = session.scalars(select(Registry)).all()
    assert [(r.name, r.url, r.required) for r in rows] == [("r2", "127.0.0.1:5012", True)]


def test_list_check_probes_every_replica_now(run: Run, session: Session, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with run_registry(tmp_path / "registry") as alive:
        session.add_all([Registry(name="alive", url=alive.host), Registry(name="dead", url=dead)])
        session.commit()
        last_shown = run("registry", "list")
        checked = run("registry", "list", "--check")

    # Until a check runs, the recorded health is shown.
    assert "UNHEALTHY" not in last_shown.stdout
    assert checked.exit_code == 0, checked.output
    rows = {line.split()[0]: line.split() for line in checked.stdout.splitlines()[1:3]}
    assert rows["alive"][3] == "healthy"
    assert rows["alive"][5] != "never"
    assert rows["dead"][3] == "UNHEALTHY"
    assert "dead: last error:" in checked.stdout
    session.expire_all()
    recorded = {r.name: r.healthy for r in session.scalars(select(Registry))}
    assert recorded == {"alive": True, "dead": False}


def test_missing_pages_through_what_a_replica_lacks(
    run: Run,
    session: Session,
    make_repository: MakeRepository,
    make_build: MakeBuild,
    make_image: MakeImage,
) -> None:
    repository = make_repository()
    replica = Registry(name="r1", url="127.0.0.1:5001")
    session.add(replica)
    session.commit()
    assert run("registry", "missing", "r1").stdout == "r1 lacks no image\n"

    images = [make_image(make_build(repository)) for _ in range(3)]
    record_presence(session, images[0].id, replica.id, verified_digest=None, error="refused")
    session.commit()

    shown = run("registry", "missing", "r1", "--limit", "2").stdout.splitlines()
    # Newest first, two of three; the one never copied says so.
    assert [line.split()[1] for line in shown] == [i.manifest_digest for i in images[:0:-1]]
    assert all(line.endswith("(never copied)") for line in shown)
    oldest = run("registry", "missing", "r1").stdout.splitlines()[-1]
    assert oldest.startswith(f"octo-app:{images[0].tag} ")
    assert oldest.endswith("(refused)")


def test_refusals_are_printed_with_their_code_and_exit_1(run: Run) -> None:
    invalid = run("registry", "add", "r1", "not a url")
    assert invalid.exit_code == EXIT_REFUSED
    assert invalid.stdout == ""
    assert invalid.stderr.startswith("error: ")
    assert "(invalid_registry_url, HTTP 400)" in invalid.stderr.splitlines()[0]

    unknown = run("registry", "remove", "r9")
    assert unknown.exit_code == EXIT_REFUSED
    assert "(registry_not_found, HTTP 404)" in unknown.stderr

    no_token = run("registry", "add", "r1", "127.0.0.1:5001", token=None)
    assert no_token.exit_code == EXIT_REFUSED
    assert "(unauthorized, HTTP 401)" in no_token.stderr


def test_without_the_api_the_commands_say_so_and_exit_3(run: Run) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = run("registry", "list", "--api-url", url)

    assert result.exit_code == EXIT_UNREACHABLE
    assert result.stderr.startswith(f"error: cannot reach the Cartridge API at {url}")
