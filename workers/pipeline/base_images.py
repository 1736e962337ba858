"""Base images: built with debootstrap (`cartridge base build`), pushed to Cartridge's registry, and
pulled from there (or through the pull proxy) by a build host that lacks one. Never from anywhere
else: a base image named without one of Cartridge's registries must be on the build host already.

A base named by digest (`127.0.0.1:5000/cartridge/base@sha256:...`) is verified by the engine as it
pulls: what it gets is exactly what `cartridge base build` recorded.
"""

from __future__ import annotations

import docker
import requests

from app.config import Settings
from workers.pipeline.image_build import ensure_base_image
from workers.pipeline.outcomes import BuildErrored
from workers.pipeline.steplog import StepLog


def cartridge_registries(settings: Settings) -> set[str]:
    """The `host:port` names Cartridge pulls base images from."""
    return {settings.engine_registry_url, settings.registry_url, settings.proxy_host}


def provide_base_image(
    api: docker.APIClient, base_image: str, settings: Settings, *, log: StepLog
) -> None:
    """Makes sure the engine has `base_image`, pulling it from Cartridge's registry if need be."""
    try:
        api.inspect_image(base_image)
        return
    except docker.errors.ImageNotFound:
        pass
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BuildErrored(f"the Docker engine failed to look up {base_image}: {exc}") from exc
    host = base_image.split("/", 1)[0] if "/" in base_image else ""
    if host in cartridge_registries(settings):
        repository, tag = _split(base_image)
        log.line(f"base image {base_image} is not on this host: pulling it from {host}")
        try:
            for event in api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise BuildErrored(
                        f"could not pull the base image {base_image}: {str(event['error']).strip()}"
                    )
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise BuildErrored(f"could not pull the base image {base_image}: {exc}") from exc
        digests = api.inspect_image(base_image).get("RepoDigests") or []
        log.line(f"base image pulled: {', '.join(digests) or base_image}")
    ensure_base_image(api, base_image, settings.host_name)


def _split(reference: str) -> tuple[str, str]:
    """(repository, tag or digest) of a reference with a registry host."""
    if "@" in reference:
        repository, _, digest = reference.partition("@")
        return repository, digest
    host, _, path = reference.partition("/")
    if ":" in path:
        name, _, tag = path.rpartition(":")
        return f"{host}/{name}", tag
    return reference, "latest"
