"""Build limits: sizes as Docker writes them, the installation's settings, a repository's own, and
what the engine is asked for."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.sizes import format_size, parse_size
from workers.pipeline.limits import BuildLimits


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("512m", 512 << 20),
        ("512M", 512 << 20),
        ("2g", 2 << 30),
        ("2GiB", 2 << 30),
        ("2 GB", 2 << 30),
        ("1.5g", 3 << 29),
        ("64k", 64 << 10),
        ("1t", 1 << 40),
    ],
)
def test_sizes_read_like_dockers(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "2x", "-1", "1.2.3g", "g", -5, True, None, 2.5])
def test_sizes_that_mean_nothing_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [(2 << 30, "2 GiB"), (512 << 20, "512 MiB"), (3 << 29, "1.5 GiB"), (1000, "1000 bytes")],
)
def test_sizes_are_shown_in_the_largest_whole_unit(size: int, text: str) -> None:
    assert format_size(size) == text


def test_the_defaults_fit_a_modest_build_host() -> None:
    limits = BuildLimits.resolve(Settings(), None)
    assert limits.describe() == (
        "memory 2 GiB, no swap, 2 CPUs, 1024 processes, 10 GiB of disk per step"
    )
    assert {limit.setting for limit in vars(limits).values()} == {
        "CARTRIDGE_BUILD_MEMORY",
        "CARTRIDGE_BUILD_SWAP",
        "CARTRIDGE_BUILD_CPUS",
        "CARTRIDGE_BUILD_PIDS",
        "CARTRIDGE_BUILD_DISK",
    }


def test_a_repository_overrides_the_installation_key_by_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTRIDGE_BUILD_MEMORY", "1g")
    monkeypatch.setenv("CARTRIDGE_BUILD_SWAP", "512m")
    limits = BuildLimits.resolve(Settings(), {"memory": 4 << 30, "cpus": 0.5, "pids": None})

    assert (limits.memory.value, limits.memory.setting) == (
        4 << 30,
        "the repository's build_limits.memory",
    )
    assert (limits.swap.value, limits.swap.setting) == (512 << 20, "CARTRIDGE_BUILD_SWAP")
    assert (limits.pids.value, limits.pids.setting) == (1024, "CARTRIDGE_BUILD_PIDS")
    assert limits.out_of_memory("container/compile").message == (
        "container/compile ran out of memory (limit 4 GiB + 512 MiB swap, "
        "the repository's build_limits.memory)"
    )
    parameters = limits.engine_parameters()
    assert parameters["memory"] == 4 << 30
    assert parameters["memswap"] == (4 << 30) + (512 << 20)
    assert (parameters["cpuperiod"], parameters["cpuquota"]) == (100_000, 50_000)
    assert json.loads(str(parameters["ulimits"])) == [
        {"Name": "fsize", "Soft": 10 << 30, "Hard": 10 << 30}
    ]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CARTRIDGE_BUILD_MEMORY", "4m"),
        ("CARTRIDGE_BUILD_MEMORY", "plenty"),
        ("CARTRIDGE_BUILD_CPUS", "0"),
        ("CARTRIDGE_BUILD_PIDS", "8"),
        ("CARTRIDGE_BUILD_DISK", "-1"),
        ("CARTRIDGE_BUILD_NETWORK", "host"),
        ("CARTRIDGE_BUILD_NETWORK", "bridge"),
        ("CARTRIDGE_BUILD_EGRESS", "everything"),
    ],
)
def test_settings_that_would_not_limit_a_build_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()
