"""Pushing the built image to a registry and confirming, through the registry's own HTTP API,
which manifest digest it now serves for the tag. A build is green only on that confirmation."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import docker
import httpx
import requests

from app.config import get_settings
from app.registry_auth.client import registry_client_auth
from app.registry_auth.tokens import worker_grant
from workers.pipeline.control import BuildControl
from workers.pipeline.outcomes import BuildErrored
from workers.pipeline.steplog import StepLog

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Asking for lists too lets the registry answer with whatever it stored, unconverted.
MANIFEST_ACCEPT = ", ".join(
    (
        DOCKER_MANIFEST,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
REGISTRY_TIMEOUT_SECONDS = 30.0
# Push progress the log does not need: one line per layer and state is enough.
_QUIET_STATUSES = frozenset({"Preparing", "Waiting", "Pushing"})


@dataclass(frozen=True)
class RegistryManifest:
    digest: str
    media_type: str
    config_digest: str
    # Compressed bytes to pull: the config and every layer.
    size: int
    layers: list[dict[str, Any]]


@dataclass(frozen=True)
class PublishedImage:
    registry: str
    image_name: str
    tag: str
    manifest: RegistryManifest


def registry_base_url(registry: str) -> str:
    """The HTTP base URL of a registry named `host:port` the way Docker names it. Docker talks
    plain HTTP to loopback registries and HTTPS to every other one; so does Cartridge."""
    if registry.startswith(("http://", "https://")):
        return registry.rstrip("/")
    host = registry.rsplit(":", 1)[0].strip("[]") if ":" in registry else registry
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return f"{'http' if loopback else 'https'}://{registry}"


def push_and_verify(
    api: docker.APIClient,
    registry: str,
    image_name: str,
    tag: str,
    *,
    log: StepLog,
    control: BuildControl,
    engine_registry: str | None = None,
    timeout: float = REGISTRY_TIMEOUT_SECONDS,
) -> PublishedImage:
    """Pushes `registry/image_name:tag` and returns the manifest the registry confirms. The engine
    pushes to `engine_registry` when it reaches the same registry by another address."""
    engine_side = engine_registry or registry
    pushed_digest = push_image(api, engine_side, image_name, tag, log=log, control=control)
    control.check()
    manifest = fetch_manifest(registry, image_name, tag, timeout=timeout)
    if pushed_digest is not None and manifest.digest != pushed_digest:
        raise BuildErrored(
            f"{registry} serves {manifest.digest} for {image_name}:{tag}, "
            f"but the push reported {pushed_digest}"
        )
    log.line(f"{registry}/{image_name}@{manifest.digest} verified")
    return PublishedImage(registry, image_name, tag, manifest)


def push_image(
    api: docker.APIClient,
    registry: str,
    image_name: str,
    tag: str,
    *,
    log: StepLog,
    control: BuildControl,
) -> str | None:
    """Pushes through the build host's engine. Returns the digest the engine reported."""
    reference = f"{registry}/{image_name}"
    digest: str | None = None
    try:
        events = api.push(
            reference, tag=tag, stream=True, decode=True, auth_config=engine_credentials(image_name)
        )
        for event in events:
            control.check()
            if "error" in event:
                raise BuildErrored(f"push to {registry} failed: {str(event['error']).strip()}")
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
            status = event.get("status")
            if status and status not in _QUIET_STATUSES:
                layer = event.get("id")
                log.line(f"{layer}: {status}" if layer else status)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BuildErrored(f"push to {registry} failed: {exc}") from exc
    return digest


def engine_credentials(image_name: str) -> dict[str, str] | None:
    """What the engine sends the registry's token realm when registry auth is on: a grant, signed
    by Cartridge, to push this one repository for as long as a push may take."""
    settings = get_settings()
    if not settings.registry_auth_enabled:
        return None
    seconds = settings.build_timeout_seconds
    return {
        "username": "cartridge-build",
        "password": worker_grant(settings, image_name, seconds=seconds),
    }


def fetch_manifest(
    registry: str, image_name: str, reference: str, *, timeout: float
) -> RegistryManifest:
    """The manifest `registry` serves for `image_name:reference`, checked against its digest."""
    url = f"{registry_base_url(registry)}/v2/{image_name}/manifests/{reference}"
    try:
        response = httpx.get(
            url, headers={"Accept": MANIFEST_ACCEPT}, timeout=timeout, auth=registry_client_auth()
        )
    except httpx.HTTPError as exc:
        raise BuildErrored(f"{registry} did not answer for the manifest: {exc}") from exc
    if response.status_code != 200:
        raise BuildErrored(
            f"{registry} answered {response.status_code} for the manifest of "
            f"{image_name}:{reference}"
        )
    body = response.content
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    announced = response.headers.get("Docker-Content-Digest")
    if announced and announced != digest:
        raise BuildErrored(
            f"{registry} announced {announced} for a manifest whose digest is {digest}"
        )
    document = json.loads(body)
    media_type = document.get("mediaType") or response.headers.get("Content-Type", "")
    if media_type not in (DOCKER_MANIFEST, OCI_MANIFEST):
        raise BuildErrored(f"{registry} serves a {media_type!r} for {image_name}:{reference}")
    config = document["config"]
    layers = [
        {"digest": layer["digest"], "size": int(layer["size"]), "media_type": layer["mediaType"]}
        for layer in document.get("layers", [])
    ]
    return RegistryManifest(
        digest=digest,
        media_type=media_type,
        config_digest=config["digest"],
        size=int(config["size"]) + sum(layer["size"] for layer in layers),
        layers=layers,
    )
