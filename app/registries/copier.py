"""Copies an image that is already on one replica to other replicas over the registry HTTP API.

The compressed blobs travel as they are: each blob a target lacks is read from the source once
and streamed, in the same pass, into one monolithic upload per target that needs it
(`POST uploads/`, then a streamed `PUT ?digest=`). Blobs are copied concurrently; a blob a target
already has costs a HEAD, and one another image path on the target holds is mounted instead of
sent. The manifest goes last, with its exact bytes and media type, so that its digest is
unchanged, and a HEAD verifies the digest. A target that fails is left out of the rest of the
pass and retried in the next one. Nothing here touches the database: callers record the reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from app.registries.distribution import Blob, Manifest, RegistryClient, RegistryError
from app.registry_auth.client import registry_client_auth

T = TypeVar("T")
# What one replica can answer that stops the copy to it (a malformed manifest included).
TARGET_ERRORS = (httpx.HTTPError, RegistryError, ValueError, KeyError)
TEE_BUFFER_CHUNKS = 8


@dataclass(frozen=True)
class ImageRef:
    path: str  # the image's path inside the registry, e.g. "octo-app"
    digest: str
    media_type: str
    tag: str | None = None

    @property
    def reference(self) -> str:
        return self.tag or self.digest


@dataclass(frozen=True)
class Target:
    address: str
    # digest -> another image path on this replica that holds the blob (cross-repository mount).
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
    limits = httpx.Limits(max_connections=(len(targets) + 1) * options.concurrency + 8)
    async with httpx.AsyncClient(
        timeout=timeout, limits=limits, verify=_tls(), auth=registry_client_auth()
    ) as http:
        states = [_Replica(RegistryClient(http, t.address), t) for t in targets]
        copy = _ImageCopy(RegistryClient(http, source), image, options)
        pending = states
        for attempt in range(options.attempts):
            if attempt:
                await asyncio.sleep(0.5 * attempt)
            await copy.run(pending)
            pending = [s for s in pending if s.report.verified_digest is None]
            if not pending:
                break
        return [s.report for s in states]


async def probe(addresses: Iterable[str], *, timeout: float) -> dict[str, str | None]:
    """GET /v2/ on each registry: None when healthy (200, or 401 when it wants credentials),
    otherwise what went wrong."""
    async with httpx.AsyncClient(
        timeout=timeout, verify=_tls(), auth=registry_client_auth()
    ) as http:

        async def one(address: str) -> str | None:
            try:
                status = await RegistryClient(http, address).ping()
            except httpx.HTTPError as exc:
                return describe(exc)
            return None if status in (200, 401) else f"GET /v2/ answered HTTP {status}"

        addresses = list(addresses)
        results = await asyncio.gather(*(one(a) for a in addresses))
        return dict(zip(addresses, results, strict=True))


class _Replica:
    """A target during one pass: its client, its report, and whether it has failed."""

    def __init__(self, client: RegistryClient, spec: Target) -> None:
        self.client = client
        self.spec = spec
        self.report = CopyReport(spec.address)
        self.failed = False

    async def attempt(self, step: Awaitable[T]) -> T | None:
        """Runs one step against this replica; a failure is recorded and makes it drop out of
        the pass (None). A replica that already failed skips the step."""
        if self.failed:
            if asyncio.iscoroutine(step):
                step.close()
            return None
        try:
            return await step
        except TARGET_ERRORS as exc:
            self.fail(describe(exc))
            return None

    def fail(self, error: str) -> None:
        self.failed = True
        self.report.error = error


class _ImageCopy:
    def __init__(self, source: RegistryClient, image: ImageRef, options: CopyOptions) -> None:
        self.source = source
        self.image = image
        self.options = options
        self._manifests: list[Manifest] | None = None

    async def run(self, replicas: list[_Replica]) -> None:
        """One pass: verify who has the image already, copy the blobs the others lack, then
        their manifests, and verify again."""
        for replica in replicas:
            replica.failed = False
        # The source's manifests are fetched while the targets are asked what they have.
        manifests = asyncio.ensure_future(self._source_manifests())
        try:
            served = await asyncio.gather(*(r.attempt(self._serves(r)) for r in replicas))
            needing = [r for r, ok in zip(replicas, served, strict=True) if ok is False]
            for replica, ok in zip(replicas, served, strict=True):
                if ok:
                    replica.report.verified_digest, replica.report.error = self.image.digest, None
            if not needing:
                return
            try:
                in_push_order = await manifests
            except TARGET_ERRORS as exc:
                for replica in needing:
                    replica.fail(f"source {self.source.address}: {describe(exc)}")
                return
        finally:
            if not manifests.done():
                manifests.cancel()
            elif not manifests.cancelled():
                manifests.exception()  # retrieved: a failure nobody needed is no error
        blobs = {b.digest: b for m in in_push_order if not m.is_index() for b in m.blobs()}
        slots = asyncio.Semaphore(self.options.concurrency)
        await asyncio.gather(*(self._copy_blob(blob, needing, slots) for blob in blobs.values()))
        await asyncio.gather(*(r.attempt(self._finish(r, in_push_order)) for r in needing))

    async def _source_manifests(self) -> list[Manifest]:
        """The image's manifests: an index's children first, then the image's own."""
        if self._manifests is None:
            path, digest = self.image.path, self.image.digest
            top = await self.source.get_manifest(path, digest, self.image.media_type)
            children = [
                await self.source.get_manifest(path, child, media_type)
                for child, media_type in (top.children() if top.is_index() else [])
            ]
            self._manifests = [*children, top]
        return self._manifests

    async def _serves(self, replica: _Replica) -> bool:
        image = self.image
        served = await replica.client.manifest_digest(image.path, image.reference, image.media_type)
        return served == image.digest

    async def _copy_blob(
        self, blob: Blob, replicas: list[_Replica], slots: asyncio.Semaphore
    ) -> None:
        async with slots:
            live = [r for r in replicas if not r.failed]
            uploads = await asyncio.gather(*(r.attempt(self._open_upload(r, blob)) for r in live))
            sinks = [(r, location) for r, location in zip(live, uploads, strict=True) if location]
            if not sinks:
                return
            try:
                async with self.source.open_blob(self.image.path, blob.digest) as response:
                    length = int(response.headers.get("Content-Length") or blob.size)
                    await _tee(response.aiter_raw(), sinks, blob.digest, length)
            except (httpx.HTTPError, RegistryError) as exc:
                for replica, _ in sinks:
                    if not replica.failed:
                        replica.fail(f"source {self.source.address}: {describe(exc)}")

    async def _open_upload(self, replica: _Replica, blob: Blob) -> str:
        """The upload location, or "" when the replica has the blob or just mounted it."""
        path = self.image.path
        if await replica.client.has_blob(path, blob.digest):
            replica.report.blobs_present += 1
            return ""
        location = await replica.client.start_upload(
            path, mount=blob.digest, mount_from=replica.spec.mount_from.get(blob.digest)
        )
        if location is None:
            replica.report.blobs_mounted += 1
            return ""
        return location

    async def _finish(self, replica: _Replica, in_push_order: list[Manifest]) -> None:
        path = self.image.path
        for child in in_push_order[:-1]:
            await replica.client.put_manifest(path, child.digest, child)
        await replica.client.put_manifest(path, self.image.reference, in_push_order[-1])
        if not await self._serves(replica):
            raise RegistryError(f"{replica.spec.address} does not serve {self.image.digest}")
        replica.report.verified_digest, replica.report.error = self.image.digest, None


class _Feed:
    """The body of one target's upload, fed chunk by chunk from the one read of the source.
    A bounded queue: the source is read no faster than the slowest live target takes it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=TEE_BUFFER_CHUNKS)
        self.closed = False

    async def body(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    async def put(self, chunk: bytes | None) -> None:
        if not self.closed:
            await self.queue.put(chunk)

    def close(self, _upload: object = None) -> None:
        # The upload ended (or failed): nobody reads any more, so unblock a waiting `put`.
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()


async def _tee(
    chunks: AsyncIterator[bytes], sinks: list[tuple[_Replica, str]], digest: str, length: int
) -> None:
    """Streams one read of a blob into an upload per sink. A target that fails drops out; the
    others go on. An error reading the source is raised after every upload is stopped."""
    feeds = [_Feed() for _ in sinks]
    uploads = []
    for (replica, location), feed in zip(sinks, feeds, strict=True):
        upload = asyncio.ensure_future(
            replica.client.finish_upload(location, digest, feed.body(), length)
        )
        upload.add_done_callback(feed.close)
        uploads.append(upload)
    try:
        async for chunk in chunks:
            if all(feed.closed for feed in feeds):
                break
            for feed in feeds:
                await feed.put(chunk)
        for feed in feeds:
            await feed.put(None)
    except BaseException:
        for upload in uploads:
            upload.cancel()
        await asyncio.gather(*uploads, return_exceptions=True)
        raise
    results = await asyncio.gather(*uploads, return_exceptions=True)
    for (replica, _), result in zip(sinks, results, strict=True):
        if isinstance(result, BaseException):
            replica.fail(describe(result))
        else:
            replica.report.blobs_copied += 1
            replica.report.bytes_copied += length


@functools.cache
def _tls() -> ssl.SSLContext:
    # The system's trust store (where an operator installs an internal CA for the replicas),
    # loaded once per process: loading it costs more than copying a small image.
    return ssl.create_default_context()


def describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPError):
        where = ""
        with contextlib.suppress(RuntimeError):  # raised when the error carries no request
            where = f" ({exc.request.method} {exc.request.url})"
        return f"{type(exc).__name__}: {exc or 'no detail'}{where}"[:1000]
    return str(exc)[:1000] or type(exc).__name__
