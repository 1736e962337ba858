"""Replicas declared in the settings are registered without an API call, and only the settings
change them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.errors import BadRequest
from app.models import Registry
from app.registries.declared import sync_declared


def _rows(session: Session) -> list[tuple[str, str, bool, bool]]:
    session.expire_all()
    rows = session.scalars(select(Registry).order_by(Registry.name))
    return [(r.name, r.url, r.required, r.declared) for r in rows]


def test_declared_registries_are_registered_updated_and_protected(
    session: Session,
    configure: Callable[..., None],
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    declared = [{"name": "r1", "url": "10.0.0.5:5000"}, {"name": "r2", "url": "10.0.0.6:5000"}]
    configure(registries=json.dumps(declared))
    from app.main import create_app

    with TestClient(create_app()) as client:  # the API registers them at start
        assert _rows(session) == [
            ("r1", "10.0.0.5:5000", True, True),
            ("r2", "10.0.0.6:5000", True, True),
        ]
        refused = client.delete("/api/v1/registries/r1", headers=auth)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "registry_declared"
        patched = client.patch("/api/v1/registries/r2", json={"required": False}, headers=auth)
        assert patched.status_code == 409

    # Changed in a file instead: r2 becomes optional, r1 is no longer declared (kept, now the
    # API's to manage), r3 is new.
    file = tmp_path / "registries.json"
    file.write_text(
        json.dumps(
            [
                {"name": "r2", "url": "10.0.0.6:5000", "required": False},
                {"name": "r3", "url": "http://10.0.0.7:5000"},
            ]
        )
    )
    configure(registries="[]", registries_file=file)
    assert sync_declared(session, get_settings()) == ["r2", "r3", "r1"]
    session.commit()
    assert _rows(session) == [
        ("r1", "10.0.0.5:5000", True, False),
        ("r2", "10.0.0.6:5000", False, True),
        ("r3", "http://10.0.0.7:5000", True, True),
    ]
    assert sync_declared(session, get_settings()) == []  # nothing left to change


@pytest.mark.parametrize(
    "declared",
    [
        '[{"name": "r1", "url": "10.0.0.5:5000; evil"}]',
        '[{"name": "R 1", "url": "10.0.0.5:5000"}]',
        '[{"name": "r1", "url": "a:1"}, {"name": "r1", "url": "b:1"}]',
    ],
)
def test_declared_registries_that_do_not_parse_are_refused(
    session: Session, configure: Callable[..., None], tmp_path: Path, declared: str
) -> None:
    file = tmp_path / "registries.json"
    file.write_text(declared)
    configure(registries_file=file)
    with pytest.raises(BadRequest):
        sync_declared(session, get_settings())
    session.rollback()
    assert _rows(session) == []
