"""Validation of container/compile and container/roles.json: every problem is a clear failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.pipeline.conventions import check_repository, parse_roles
from workers.pipeline.outcomes import BuildFailed
from workers.pipeline.roles import Role


def failure(raw: str) -> str:
    with pytest.raises(BuildFailed) as raised:
        parse_roles(raw.encode())
    return raised.value.message


def test_roles_map_names_to_command_lines() -> None:
    roles = parse_roles(b'{"web": "bin/server -p $PORT", ".shell": "/bin/sh -l"}')
    assert roles == {"web": Role("bin/server -p $PORT"), ".shell": Role("/bin/sh -l")}
    assert parse_roles(b"{}") == {}


def test_a_role_object_names_its_stop_signal() -> None:
    roles = parse_roles(
        b'{"resque": {"command": "rake resque:work", "stop_signal": "QUIT"},'
        b' "web": {"command": "bin/server"}, "hup": {"command": "x", "stop_signal": "SIGHUP"}}'
    )
    assert roles == {
        "resque": Role("rake resque:work", stop_signal="QUIT"),
        "web": Role("bin/server", stop_signal="TERM"),
        "hup": Role("x", stop_signal="HUP"),
    }
    # The stored form keeps the string form for what needs nothing else.
    assert {name: role.stored for name, role in roles.items()} == {
        "resque": {"command": "rake resque:work", "stop_signal": "QUIT"},
        "web": "bin/server",
        "hup": {"command": "x", "stop_signal": "HUP"},
    }


@pytest.mark.parametrize(
    "raw",
    [
        "{'web': 'bin/server'}",  # single quotes
        '{"web": "bin/server",}',  # trailing comma
        '{"web": "bin/server"} // the web role',  # comment
        '{"web": "bin/server"',  # truncated
    ],
)
def test_loose_json_is_refused_with_the_dialect_in_the_message(raw: str) -> None:
    message = failure(raw)
    assert message.startswith("container/roles.json is not valid JSON: ")
    assert "at line 1, column" in message
    assert "strict JSON: double quotes around names and commands, no trailing commas" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["web"]', "must be a JSON object mapping role names to commands"),
        (
            '{"web": ["bin/server", "-p", "8000"]}',
            "role 'web' must be a string (a command line), not an array",
        ),
        ('{"web": 8000}', "not a number"),
        ('{"web": null}', "not null"),
        ('{"web": "   "}', "the command of role 'web' is empty"),
        ('{"web": "a", "web": "b"}', "defines the role 'web' more than once"),
        ('{"my role": "a"}', "'my role' is not a valid role name"),
        ('{"": "a"}', "'' is not a valid role name"),
        ('{"web": {"stop_signal": "QUIT"}}', "role 'web' has no \"command\""),
        ('{"web": {"command": 1}}', "role 'web' must be a string (a command line), not a number"),
        ('{"web": {"command": " "}}', "the command of role 'web' is empty"),
        (
            '{"web": {"command": "x", "stopsignal": "QUIT"}}',
            "role 'web' has the unknown key 'stopsignal'; a role object has 'command', "
            "'stop_signal'",
        ),
        ('{"web": {"command": "x", "stop_signal": "QUITE"}}', "not 'QUITE'"),
        ('{"web": {"command": "x", "stop_signal": 3}}', "must be a signal name, one of ABRT"),
        ('{"web": {"command": "x", "stop_signal": "quit"}}', "not 'quit'"),
        ('{"web": {"command": "x", "smoke": 8000}}', "the smoke check of role 'web' must be an"),
        ('{"web": {"command": "x", "smoke": {}}}', 'needs exactly one of "http" and "exec"'),
        (
            '{"web": {"command": "x", "smoke": {"http": 80, "exec": "y"}}}',
            'needs exactly one of "http" and "exec"',
        ),
        ('{"web": {"command": "x", "smoke": {"http": "80"}}}', '"http" must be a TCP port'),
        ('{"web": {"command": "x", "smoke": {"http": 70000}}}', '"http" must be a TCP port'),
        (
            '{"web": {"command": "x", "smoke": {"http": 80, "path": "healthz"}}}',
            '"path" must start with "/"',
        ),
        ('{"web": {"command": "x", "smoke": {"exec": ""}}}', '"exec" must be a command line'),
        (
            '{"web": {"command": "x", "smoke": {"exec": "y", "within_seconds": 0}}}',
            '"within_seconds" must be a number of seconds above 0 and at most 300',
        ),
        (
            '{"web": {"command": "x", "smoke": {"exec": "y", "timeout": 3}}}',
            "has the unknown key 'timeout'",
        ),
    ],
)
def test_invalid_roles_say_what_to_change(raw: str, expected: str) -> None:
    assert expected in failure(raw)


def test_a_smoke_check_is_stored_with_its_defaults() -> None:
    roles = parse_roles(
        b'{"web": {"command": "bin/server", "smoke": {"http": 8000, "path": "/healthz"}},'
        b' "jobs": {"command": "bin/jobs", "smoke": {"exec": "bin/check", "within_seconds": 5}}}'
    )
    assert roles["web"].stored == {
        "command": "bin/server",
        "stop_signal": "TERM",
        "smoke": {"http": 8000, "path": "/healthz", "within_seconds": 20.0},
    }
    assert roles["jobs"].stored == {
        "command": "bin/jobs",
        "stop_signal": "TERM",
        "smoke": {"exec": "bin/check", "within_seconds": 5.0},
    }


def test_roles_json_must_be_utf8() -> None:
    with pytest.raises(BuildFailed, match="is not UTF-8 text"):
        parse_roles(b'{"web": "caf\xe9"}')


def write(root: Path, relative: str, content: str = "", mode: int = 0o644) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)


def test_a_complete_repository_passes(tmp_path: Path) -> None:
    write(tmp_path, "container/compile", "#!/bin/sh\n", 0o755)
    write(tmp_path, "container/roles.json", '{"web": "bin/server"}')
    conventions = check_repository(tmp_path)
    assert conventions.roles == {"web": Role("bin/server")}
    assert not conventions.has_files
    assert not conventions.has_dependencies

    write(tmp_path, "container/files/etc/app.conf", "x=1\n")
    write(tmp_path, "container/dependencies", "#!/bin/sh\n", 0o755)
    conventions = check_repository(tmp_path)
    assert conventions.has_files
    assert conventions.has_dependencies


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({}, "container/compile is missing"),
        (
            {"container/compile": 0o644},
            "container/compile is not executable: run `git update-index",
        ),
        ({"container/compile": 0o755}, "container/roles.json is missing"),
        (
            {"container/compile": 0o755, "container/dependencies": 0o644},
            "container/dependencies is not executable",
        ),
    ],
)
def test_missing_or_unusable_scripts_fail(
    tmp_path: Path, layout: dict[str, int], expected: str
) -> None:
    for relative, mode in layout.items():
        write(tmp_path, relative, "#!/bin/sh\n", mode)
    with pytest.raises(BuildFailed) as raised:
        check_repository(tmp_path)
    assert raised.value.message.startswith(expected)


def test_container_files_must_be_a_directory(tmp_path: Path) -> None:
    write(tmp_path, "container/compile", "#!/bin/sh\n", 0o755)
    write(tmp_path, "container/roles.json", "{}")
    write(tmp_path, "container/files", "not a directory")
    with pytest.raises(BuildFailed, match="container/files must be a directory"):
        check_repository(tmp_path)
