"""How an image is named: its path inside a registry, and the reference deploy hosts pull."""

from __future__ import annotations


def path_in_registry(image_name: str) -> str:
    """The image's path inside a registry: a leading registry host (`host:port/`,
    `registry.example.com/`, `localhost/`) is dropped, by Docker's own rule."""
    first, _, rest = image_name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return image_name


def pull_reference(proxy_host: str, image_name: str, digest: str) -> str:
    """How deploy hosts pull the image: through the caching proxy, by digest."""
    return f"{proxy_host}/{path_in_registry(image_name)}@{digest}"
