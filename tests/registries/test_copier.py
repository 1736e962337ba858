"""One read of a blob feeding several uploads: what happens when a target or the source fails
half-way, against real registries."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from app.registries.copier import Target, _Replica, _tee
from app.registries.distribution import RegistryClient
from tests.support.registry_cluster import RegistryCluster

pytestmark = pytest.mark.e2e

CHUNK = 1 << 20
BLOB = os.urandom(12 * CHUNK)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


async def _chunks(after_first: Callable[[], None]) -> AsyncIterator[bytes]:
    yield BLOB[:CHUNK]
    after_first()
    for offset in range(CHUNK, len(BLOB), CHUNK):
        yield BLOB[offset : offset + CHUNK]


async def _tee_to(
    cluster: RegistryCluster, indexes: list[int], chunks: AsyncIterator[bytes]
) -> list[_Replica]:
    async with httpx.AsyncClient(timeout=30) as http:
        replicas = [
            _Replica(RegistryClient(http, cluster[i].host), Target(cluster[i].host))
            for i in indexes
        ]
        locations = [await r.client.start_upload("tee/test") for r in replicas]
        sinks = [(r, loc) for r, loc in zip(replicas, locations, strict=True) if loc]
        await _tee(chunks, sinks, DIGEST, len(BLOB))
    return replicas


def _has_blob(address: str) -> bool:
    return httpx.head(f"http://{address}/v2/tee/test/blobs/{DIGEST}").status_code == 200


def test_a_target_lost_mid_stream_drops_out_and_the_others_finish(
    cluster: RegistryCluster,
) -> None:
    replicas = asyncio.run(_tee_to(cluster, [1, 2], _chunks(after_first=cluster[2].stop)))

    healthy, lost = replicas
    assert (healthy.failed, healthy.report.blobs_copied) == (False, 1)
    assert healthy.report.bytes_copied == len(BLOB)
    assert _has_blob(cluster[1].host)
    assert lost.failed
    assert lost.report.error
    assert lost.report.blobs_copied == 0


def test_a_source_failing_mid_stream_stops_every_upload(cluster: RegistryCluster) -> None:
    def source_breaks() -> None:
        raise httpx.ReadError("source connection reset")

    with pytest.raises(httpx.ReadError):
        asyncio.run(_tee_to(cluster, [1, 2], _chunks(after_first=source_breaks)))

    assert not _has_blob(cluster[1].host)
    assert not _has_blob(cluster[2].host)
