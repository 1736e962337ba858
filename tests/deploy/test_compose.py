"""docker-compose.yml is valid for Debian's docker-compose and sets only settings that exist."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from app.config import Settings
from tests.support.paths import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
REQUIRED = {
    "CARTRIDGE_PUBLIC_URL": "https://cartridge.example.com",
    "CARTRIDGE_WEBHOOK_SECRET": "x" * 32,
    "CARTRIDGE_SECRET_KEYS": "x7Yt2VxJm8kq3L9nC1pR5sT0uW4zA6bD8eF2gH4jK6M=",
}


def _rendered() -> dict[str, Any]:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (script/test installs Debian's package)")
    completed = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **REQUIRED},
        cwd=REPO_ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    rendered: dict[str, Any] = yaml.safe_load(completed.stdout)
    return rendered


def test_compose_renders_and_every_cartridge_variable_is_a_setting() -> None:
    services = _rendered()["services"]
    known = {f"CARTRIDGE_{name.upper()}" for name in Settings.model_fields}
    for name, service in services.items():
        environment = service.get("environment") or {}
        variables = {key for key in environment if key.startswith("CARTRIDGE_")}
        assert variables <= known, f"{name} sets unknown settings: {sorted(variables - known)}"


def test_compose_declares_both_replicas_and_runs_the_proxy_from_cartridge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = _rendered()["services"]
    for key, value in services["api"]["environment"].items():
        monkeypatch.setenv(key, value or "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert [(r.name, r.url) for r in settings.registries] == [
        ("registry-1", "http://registry-1:5000"),
        ("registry-2", "http://registry-2:5000"),
    ]
    # The host's engine pushes to the first replica's published loopback port.
    assert settings.engine_registry_url == "127.0.0.1:5001"
    assert "127.0.0.1:5001:5000" in services["registry-1"]["ports"][0].replace('"', "")
    proxy = services["proxy"]
    assert proxy["command"] == ["cartridge", "proxy", "serve"]
    assert proxy["environment"]["CARTRIDGE_PROXY_LISTEN"] == "0.0.0.0:5080"
