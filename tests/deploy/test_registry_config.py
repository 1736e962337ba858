"""The registry config Cartridge deploys allows deletes by digest and keeps the blob descriptor
cache off (with it, a registry answers 200 with empty bodies after an offline garbage-collect)."""

from __future__ import annotations

import yaml

from tests.support.paths import REPO_ROOT


def test_the_deployed_registry_config_deletes_and_caches_no_blob_descriptors() -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy" / "registry" / "config.yml").read_text())
    storage = config["storage"]
    assert storage["delete"]["enabled"] is True
    assert "blobdescriptor" not in (storage.get("cache") or {})
