"""Fan-out of a pushed image to every registry replica, verification by digest, and the quorum
that decides whether a build is green.

The build pipeline pushes once, from the Docker engine, to `CARTRIDGE_REGISTRY_URL`, records the
`images` row and then calls `replicate_image`; the build succeeds only when
`ReplicationResult.quorum_met` holds. Replicas that missed the image are caught up later by the
repair job (`copy_image_to`, run from `workers/replication.py`).

These functions only flush; the caller commits. They block for as long as the copy takes (they
run its event loop), so they belong in workers and the CLI, never in the API's event loop, and
the caller should not hold row locks meanwhile (commit the build's state changes first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.errors import NotFound
from app.images.references import path_in_registry
from app.models import Image, Registry, ReplicaState
from app.registries import queries
from app.registries.copier import CopyOptions, CopyReport, ImageRef, Target, copy_image
from app.registries.service import ensure_default_registry, normalize_address


@dataclass(frozen=True)
class ReplicaOutcome:
    registry_id: int
    name: str
    required: bool
    verified_digest: str | None
    error: str | None = None
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    bytes_copied: int = 0

    @property
    def present(self) -> bool:
        return self.verified_digest is not None


@dataclass(frozen=True)
class ReplicationResult:
    image_id: int
    manifest_digest: str
    source: str
    outcomes: tuple[ReplicaOutcome, ...]
    quorum_met: bool

    @property
    def verified_on(self) -> list[str]:
        return [o.name for o in self.outcomes if o.present]

    def describe(self) -> str:
        """One line for the build log, or the build's error when the quorum does not hold."""
        verdict = "quorum met" if self.quorum_met else "quorum NOT met"
        verified = ", ".join(self.verified_on) or "no replica"
        line = (
            f"{self.manifest_digest} verified on {verified} "
            f"({len(self.verified_on)} of {len(self.outcomes)} replicas; {verdict})"
        )
        failures = [f"{o.name}: {o.error}" for o in self.outcomes if not o.present]
        return "; ".join([line, *failures])


def quorum_holds(
    registries: Iterable[Registry], verified_ids: set[int], quorum: int | None
) -> bool:
    """Every required replica verified (or `quorum` of them, when set). With no replica marked
    required, one verified replica is enough; an image on no replica never is."""
    if not verified_ids:
        return False
    required = [r.id for r in registries if r.required]
    needed = len(required) if quorum is None else min(quorum, len(required))
    return sum(1 for registry_id in required if registry_id in verified_ids) >= needed


def quorum_met(session: Session, image_id: int) -> bool:
    """Whether the recorded presence of the image satisfies the quorum (`CARTRIDGE_REPLICA_QUORUM`,
    or every required replica)."""
    image = _image(session, image_id)
    verified = {
        row.registry_id
        for row in queries.presence_rows(session, image_id)
        if row.state == ReplicaState.PRESENT and row.verified_digest == image.manifest_digest
    }
    registries = queries.list_registries(session)
    return quorum_holds(registries, verified, get_settings().replica_quorum)


def replicate_image(
    session: Session, image_id: int, *, source: str | None = None
) -> ReplicationResult:
    """Copies the image from `source` (default `CARTRIDGE_REGISTRY_URL`, where the build pushed
    it) to every replica, verifies its manifest digest on each (the source included) and records
    presence per replica."""
    settings = get_settings()
    image = _image(session, image_id)
    ensure_default_registry(session)
    registries = queries.serving_registries(session)
    source_address = normalize_address(source or settings.registry_url)
    reports = _copy(session, image, source_address, registries, settings)
    outcomes = tuple(
        _record(session, image, registry, report)
        for registry, report in zip(registries, reports, strict=True)
    )
    verified = {o.registry_id for o in outcomes if o.present}
    return ReplicationResult(
        image_id=image.id,
        manifest_digest=image.manifest_digest,
        source=source_address,
        outcomes=outcomes,
        quorum_met=quorum_holds(registries, verified, settings.replica_quorum),
    )


def copy_image_to(session: Session, *, image_id: int, registry_id: int) -> ReplicaOutcome:
    """Repairs one replica: copies the image there from a replica it is verified on (healthy
    ones first) and records the result."""
    image = _image(session, image_id)
    target = session.get(Registry, registry_id)
    if target is None:
        raise NotFound(f"Registry {registry_id} does not exist.", code="registry_not_found")
    sources = queries.sources_holding(session, image_id, exclude=registry_id)
    if not sources:
        # Nothing recorded: the image may still be on its way to its first replica.
        error = "no replica holds a verified copy of this image"
        return _outcome(target, CopyReport(target.url, error=error))
    report = CopyReport(target.url)
    for source in sources:
        (report,) = _copy(session, image, source.url, [target], get_settings())
        if report.verified_digest:
            break
    return _record(session, image, target, report)


def _copy(
    session: Session, image: Image, source: str, targets: list[Registry], settings: Settings
) -> list[CopyReport]:
    path = path_in_registry(image.name)
    digests = {image.config_digest, *(layer.get("digest", "") for layer in image.layers or [])}
    mounts = queries.mount_sources(
        session, [t.id for t in targets], digests, exclude_name=image.name
    )
    options = CopyOptions(
        concurrency=settings.replication_concurrency,
        attempts=settings.replication_attempts,
        connect_timeout=settings.registry_connect_timeout_seconds,
        timeout=settings.registry_timeout_seconds,
    )
    ref = ImageRef(path, image.manifest_digest, image.media_type, image.tag or None)
    specs = [
        Target(t.url, {d: path_in_registry(name) for d, name in mounts[t.id].items()})
        for t in targets
    ]
    return asyncio.run(copy_image(source, specs, ref, options))


def _record(
    session: Session, image: Image, registry: Registry, report: CopyReport
) -> ReplicaOutcome:
    queries.record_presence(
        session,
        image.id,
        registry.id,
        verified_digest=report.verified_digest,
        error=report.error,
    )
    return _outcome(registry, report)


def _outcome(registry: Registry, report: CopyReport) -> ReplicaOutcome:
    return ReplicaOutcome(
        registry_id=registry.id,
        name=registry.name,
        required=registry.required,
        verified_digest=report.verified_digest,
        error=report.error,
        blobs_copied=report.blobs_copied,
        blobs_mounted=report.blobs_mounted,
        blobs_present=report.blobs_present,
        bytes_copied=report.bytes_copied,
    )


def _image(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"Image {image_id} does not exist.", code="image_not_found")
    return image
