"""A small async client for the registry HTTP API V2 (CNCF Distribution): what copying an image
between replicas needs, and nothing else."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX)
INDEX_MEDIA_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})

# Registry hosts Docker itself talks plain HTTP to; every other replica is HTTPS unless its
# address says `http://` explicitly (a private network the operator vouches for).
LOOPBACK_NAMES = frozenset({"localhost"})


class RegistryError(Exception):
    """A registry answered something a copy cannot go on from."""


def base_url(address: str) -> str:
    """`host:port` as Docker names a registry (or an explicit `http(s)://host:port`) -> base URL."""
    if "://" in address:
        return address.rstrip("/")
    return f"{'http' if is_loopback(address) else 'https'}://{address}"


def is_loopback(address: str) -> bool:
    host = httpx.URL(f"//{address.split('://', 1)[-1]}").host
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sha256_digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    content: bytes

    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    def children(self) -> list[tuple[str, str]]:
        """(digest, media type) of the manifests an index points to."""
        document = json.loads(self.content)
        return [(entry["digest"], entry["mediaType"]) for entry in document.get("manifests", [])]

    def blobs(self) -> list[Blob]:
        """The config and the layers an image manifest references, in manifest order."""
        document = json.loads(self.content)
        entries = [document["config"], *document.get("layers", [])] if "config" in document else []
        # Foreign layers (with `urls`) live outside the registry and are never pushed to it.
        return [Blob(e["digest"], int(e.get("size", 0))) for e in entries if not e.get("urls")]


def accept_header(preferred: str | None = None) -> str:
    types = [preferred] if preferred else []
    types += [t for t in MANIFEST_MEDIA_TYPES if t != preferred]
    return ", ".join(types)


class RegistryClient:
    """One replica, over a shared `httpx.AsyncClient` (connection pooling across replicas)."""

    def __init__(self, http: httpx.AsyncClient, address: str) -> None:
        self.http = http
        self.address = address
        self.base = base_url(address)

    def _url(self, path: str) -> str:
        return f"{self.base}/v2/{path}"

    async def ping(self) -> int:
        response = await self.http.get(self._url(""))
        return response.status_code

    async def manifest_digest(self, path: str, reference: str, media_type: str) -> str | None:
        """The digest the replica serves for `reference`, or None when it does not have it."""
        response = await self.http.head(
            self._url(f"{path}/manifests/{reference}"),
            headers={"Accept": accept_header(media_type)},
        )
        if response.status_code == 404:
            return None
        _expect(response, 200, "HEAD manifest")
        return response.headers.get("Docker-Content-Digest")

    async def get_manifest(self, path: str, digest: str, media_type: str) -> Manifest:
        response = await self.http.get(
            self._url(f"{path}/manifests/{digest}"),
            headers={"Accept": accept_header(media_type)},
        )
        _expect(response, 200, "GET manifest")
        actual = sha256_digest(response.content)
        if actual != digest:
            raise RegistryError(f"{self.address} served manifest {actual} for {digest}")
        content_type = response.headers.get("Content-Type", media_type).split(";")[0].strip()
        return Manifest(digest, content_type, response.content)

    async def put_manifest(self, path: str, reference: str, manifest: Manifest) -> None:
        response = await self.http.put(
            self._url(f"{path}/manifests/{reference}"),
            content=manifest.content,
            headers={"Content-Type": manifest.media_type},
        )
        _expect(response, 201, "PUT manifest")
        returned = response.headers.get("Docker-Content-Digest")
        if returned and returned != manifest.digest:
            raise RegistryError(f"{self.address} stored manifest {returned}, not {manifest.digest}")

    async def has_blob(self, path: str, digest: str) -> bool:
        response = await self.http.head(self._url(f"{path}/blobs/{digest}"))
        if response.status_code == 404:
            return False
        _expect(response, 200, "HEAD blob")
        return True

    async def start_upload(
        self, path: str, *, mount: str | None = None, mount_from: str | None = None
    ) -> str | None:
        """Opens an upload and returns its location, or None when the blob was mounted from
        `mount_from` (another path on the same replica) and needs no upload."""
        params = {"mount": mount, "from": mount_from} if mount and mount_from else None
        response = await self.http.post(self._url(f"{path}/blobs/uploads/"), params=params)
        if response.status_code == 201 and params:
            return None
        _expect(response, 202, "POST upload")
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.address} opened an upload without a Location")
        return urljoin(self.base + "/", location)

    async def finish_upload(
        self, location: str, digest: str, body: AsyncIterator[bytes], length: int
    ) -> None:
        """Sends the whole blob in one streamed PUT; the replica checks it against `digest`."""
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        response = await self.http.put(
            url,
            content=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
        )
        _expect(response, 201, "PUT upload")

    @asynccontextmanager
    async def open_blob(self, path: str, digest: str) -> AsyncIterator[httpx.Response]:
        """A streaming GET of a blob (following a redirect to the storage backend)."""
        request = self.http.build_request("GET", self._url(f"{path}/blobs/{digest}"))
        response = await self.http.send(request, stream=True, follow_redirects=True)
        try:
            if response.status_code != 200:
                await response.aread()
                _expect(response, 200, "GET blob")
            yield response
        finally:
            await response.aclose()


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code == status:
        return
    try:
        detail = response.text[:300].strip()
    except httpx.ResponseNotRead:
        detail = ""
    host = response.request.url.netloc.decode()
    raise RegistryError(f"{what} on {host}: HTTP {response.status_code} {detail}".strip())
