"""Copies an image that is already on one replica to other replicas over the registry HTTP API.

The compressed blobs are streamed as they are (GET from the source, one streamed PUT upload to
the target), concurrently across replicas and blobs, skipping blobs a replica already has and
mounting those another repository on the same replica holds. The manifest goes last, with its
exact bytes and media type, so its digest is unchanged; a HEAD then verifies the digest. Nothing
here touches the database: callers record the reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.registries.distribution import Blob, Manifest, RegistryClient, RegistryError


@dataclass(frozen=True)
class ImageRef:
    repository: str  # the path inside the registry, e.g. "octo-app"
    digest: str
    media_type: str
    tag: str | None = None

    @property
    def reference(self) -> str:
        return self.tag or self.digest


@dataclass(frozen=True)
class Target:
    address: str
    # digest -> another repository on this replica that holds the blob (cross-repository mount).
    mount_from: Mapping[str, str] = field(default_factory=dict)


@dataclass
class CopyReport:
    address: str
    verified_digest: str | None = None
    error: str | None = None
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    bytes_copied: int = 0


@dataclass(frozen=True)
class CopyOptions:
    concurrency: int = 8
    attempts: int = 2
    connect_timeout: float = 5.0
    timeout: float = 60.0


async def copy_image(
    source: str, targets: Iterable[Target], image: ImageRef, options: CopyOptions
) -> list[CopyReport]:
    """Makes every target serve `image` (by tag when it has one) and reports, per target, the
    digest it verified or the error that stopped it. A target that already serves the digest
    costs one HEAD."""
    targets = list(targets)
    timeout = httpx.Timeout(options.timeout, connect=options.connect_timeout)
    limits = httpx.Limits(max_connections=4 * options.concurrency + 2 * len(targets))
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        manifests = _SourceManifests(RegistryClient(http, source), image)
        blob_slots = asyncio.Semaphore(options.concurrency)
        copies = [
            _TargetCopy(RegistryClient(http, t.address), t, manifests, image, blob_slots)
            for t in targets
        ]
        return list(await asyncio.gather(*(copy.run(options.attempts) for copy in copies)))


async def probe(addresses: Iterable[str], *, timeout: float) -> dict[str, str | None]:
    """GET /v2/ on each registry: None when healthy (200, or 401 when it wants credentials),
    otherwise what went wrong."""
    async with httpx.AsyncClient(timeout=timeout) as http:

        async def one(address: str) -> str | None:
            try:
                status = await RegistryClient(http, address).ping()
            except httpx.HTTPError as exc:
                return describe(exc)
            return None if status in (200, 401) else f"GET /v2/ answered HTTP {status}"

        addresses = list(addresses)
        results = await asyncio.gather(*(one(a) for a in addresses))
        return dict(zip(addresses, results, strict=True))


class _SourceManifests:
    """The image's manifests, fetched from the source once and shared by every target."""

    def __init__(self, source: RegistryClient, image: ImageRef) -> None:
        self.source = source
        self.image = image
        self._lock = asyncio.Lock()
        self._manifests: list[Manifest] | None = None

    async def in_push_order(self) -> list[Manifest]:
        """An index's child manifests first, then the image's own manifest."""
        async with self._lock:
            if self._manifests is None:
                self._manifests = await self._fetch()
            return self._manifests

    async def _fetch(self) -> list[Manifest]:
        repository = self.image.repository
        try:
            top = await self.source.get_manifest(
                repository, self.image.digest, self.image.media_type
            )
            children = [
                await self.source.get_manifest(repository, digest, media_type)
                for digest, media_type in (top.children() if top.is_index() else [])
            ]
        except (httpx.HTTPError, RegistryError) as exc:
            raise RegistryError(f"source {self.source.address}: {describe(exc)}") from exc
        return [*children, top]


class _TargetCopy:
    def __init__(
        self,
        target: RegistryClient,
        spec: Target,
        manifests: _SourceManifests,
        image: ImageRef,
        blob_slots: asyncio.Semaphore,
    ) -> None:
        self.target = target
        self.spec = spec
        self.manifests = manifests
        self.image = image
        self.blob_slots = blob_slots
        self.report = CopyReport(spec.address)

    async def run(self, attempts: int) -> CopyReport:
        for attempt in range(1, attempts + 1):
            try:
                await self._copy_once()
            except (httpx.HTTPError, RegistryError, ValueError, KeyError) as exc:
                self.report.error = describe(exc)
                if attempt < attempts:
                    await asyncio.sleep(0.5 * attempt)
                continue
            self.report.verified_digest = self.image.digest
            self.report.error = None
            break
        return self.report

    async def _serves_image(self) -> bool:
        image = self.image
        served = await self.target.manifest_digest(
            image.repository, image.reference, image.media_type
        )
        return served == image.digest

    async def _copy_once(self) -> None:
        if await self._serves_image():
            return
        manifests = await self.manifests.in_push_order()
        blobs = {blob.digest: blob for m in manifests if not m.is_index() for blob in m.blobs()}
        await _all(self._copy_blob(blob) for blob in blobs.values())
        repository = self.image.repository
        for child in manifests[:-1]:
            await self.target.put_manifest(repository, child.digest, child)
        await self.target.put_manifest(repository, self.image.reference, manifests[-1])
        if not await self._serves_image():
            raise RegistryError(
                f"{self.spec.address} does not serve {self.image.digest} after the push"
            )

    async def _copy_blob(self, blob: Blob) -> None:
        repository = self.image.repository
        async with self.blob_slots:
            if await self.target.has_blob(repository, blob.digest):
                self.report.blobs_present += 1
                return
            location = await self.target.start_upload(
                repository, mount=blob.digest, mount_from=self.spec.mount_from.get(blob.digest)
            )
            if location is None:
                self.report.blobs_mounted += 1
                return
            async with self.manifests.source.open_blob(repository, blob.digest) as response:
                length = int(response.headers.get("Content-Length") or blob.size)
                await self.target.finish_upload(location, blob.digest, response.aiter_raw(), length)
            self.report.blobs_copied += 1
            self.report.bytes_copied += length


async def _all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Runs the coroutines concurrently; the first failure cancels the others and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None


def describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPError):
        where = ""
        with contextlib.suppress(RuntimeError):  # raised when the error carries no request
            where = f" ({exc.request.method} {exc.request.url})"
        return f"{type(exc).__name__}: {exc or 'no detail'}{where}"[:1000]
    return str(exc)[:1000] or type(exc).__name__
