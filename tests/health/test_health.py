from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import ConfigurationError, Settings


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


def test_readyz_is_503_when_the_database_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from app.db import reset_caches
    from app.main import create_app

    monkeypatch.setenv("CARTRIDGE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    reset_caches()
    try:
        with TestClient(create_app()) as client:
            response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "database_unavailable"
    finally:
        monkeypatch.setenv("CARTRIDGE_DATABASE_URL", database_url)
        reset_caches()


def test_production_refuses_default_settings() -> None:
    settings = Settings(environment="production", webhook_secret="change-me", database_url="")
    with pytest.raises(ConfigurationError) as excinfo:
        settings.check()
    message = str(excinfo.value)
    assert "CARTRIDGE_DATABASE_URL" in message
    assert "CARTRIDGE_WEBHOOK_SECRET" in message
    assert "CARTRIDGE_PUBLIC_URL" in message


def test_production_accepts_complete_settings() -> None:
    Settings(
        environment="production",
        database_url="postgresql+psycopg://cartridge@db/cartridge",
        broker_url="redis://redis:6379/0",
        webhook_secret="a-long-random-webhook-secret-value",
        secret_keys="x7Yt2VxJm8kq3L9nC1pR5sT0uW4zA6bD8eF2gH4jK6M=",
        public_url="https://cartridge.example.com",
    ).check()
