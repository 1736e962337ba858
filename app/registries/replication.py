"""Fan-out of a pushed image to every registry replica, verification by digest, and the quorum
that decides whether a build is green.

The build pipeline pushes once, from the Docker engine, to `CARTRIDGE_REGISTRY_URL`, records the
`images` row and then calls `replicate_image`; the build succeeds only when
`ReplicationResult.quorum_met` holds. Replicas that missed the image are caught up later by the
repair job (`repair_image`, run from `workers/replication.py`).

No transaction stays open while replicas are contacted: each copy reads what it needs in one
unit of work (`plan_*`), ends it, copies over the network with no database connection held,
and records what each replica verified in a new one (`record_*`). A server that ends idle
transactions (`idle_in_transaction_session_timeout`) or a copy that takes minutes is fine.
`replicate_image` and `repair_image` run the three steps, each step its own unit of work; they
block for as long as the copy takes (they run its event loop), so they belong in workers and
the CLI, never in the API's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import session_scope
from app.images.references import path_in_registry
from app.models import Image, Registry, ReplicaState
from app.registries import queries
from app.registries.copier import CopyOptions, CopyReport, ImageRef, Target, copy_image
from app.registries.service import ensure_default_registry, normalize_address


class ReplicationAborted(Exception):
    """The image or replica a replication job names was deleted after the job was queued."""


@dataclass(frozen=True)
class Replica:
    """A registry replica as a copy needs it, read before the copy (no ORM object crosses it)."""

    id: int
    name: str
    url: str
    required: bool

    @classmethod
    def of(cls, registry: Registry) -> Replica:
        return cls(registry.id, registry.name, registry.url, registry.required)


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
    registries: Iterable[Registry | Replica], verified_ids: set[int], quorum: int | None
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


def presence_report(session: Session, image_id: int) -> str:
    """One line: on which replicas the image is verified, and why not on the others."""
    image = _image(session, image_id)
    presence = {row.registry_id: row for row in queries.presence_rows(session, image_id)}
    parts = []
    for registry in queries.list_registries(session):
        row = presence.get(registry.id)
        if row is not None and row.state == ReplicaState.PRESENT:
            parts.append(f"{registry.name}: verified")
        else:
            why = (row.last_error if row is not None else None) or "not copied yet"
            parts.append(f"{registry.name}: missing ({why})")
    return f"{image.manifest_digest} " + "; ".join(parts)


def replicate_image(image_id: int, *, source: str | None = None) -> ReplicationResult:
    """Copies the image from `source` (default `CARTRIDGE_REGISTRY_URL`, where the build pushed
    it) to every replica, verifies its manifest digest on each (the source included) and records
    presence per replica. Opens its own units of work, none of them across the copy."""
    with session_scope() as session:
        plan = plan_replication(session, image_id, source=source)
    reports = asyncio.run(copy_image(plan.source, plan.targets, plan.image, plan.options))
    with session_scope() as session:
        return record_replication(session, plan, reports)


@dataclass(frozen=True)
class ReplicationPlan:
    image_id: int
    image: ImageRef
    source: str
    replicas: tuple[Replica, ...]
    targets: tuple[Target, ...]  # one per replica, in the same order
    options: CopyOptions


def plan_replication(
    session: Session, image_id: int, *, source: str | None = None
) -> ReplicationPlan:
    """What copying the image to every replica needs, read from the database (the `default`
    replica is registered on first use: commit before copying)."""
    settings = get_settings()
    image = _image(session, image_id)
    ensure_default_registry(session)
    replicas = tuple(Replica.of(r) for r in queries.serving_registries(session))
    return ReplicationPlan(
        image_id=image.id,
        image=_ref(image),
        source=normalize_address(source or settings.registry_url),
        replicas=replicas,
        targets=_targets(session, image, replicas),
        options=_options(settings),
    )


def record_replication(
    session: Session, plan: ReplicationPlan, reports: Sequence[CopyReport]
) -> ReplicationResult:
    outcomes = tuple(
        _record(session, plan.image_id, replica, report)
        for replica, report in zip(plan.replicas, reports, strict=True)
    )
    verified = {o.registry_id for o in outcomes if o.present}
    return ReplicationResult(
        image_id=plan.image_id,
        manifest_digest=plan.image.digest,
        source=plan.source,
        outcomes=outcomes,
        quorum_met=quorum_holds(plan.replicas, verified, get_settings().replica_quorum),
    )


def repair_image(*, image_id: int, registry_id: int) -> ReplicaOutcome:
    """Repairs one replica: copies the image there from a replica it is verified on (healthy
    ones first) and records the result. Opens its own units of work, none across the copy."""
    with session_scope() as session:
        plan = plan_repair(session, image_id=image_id, registry_id=registry_id)
    if not plan.sources:
        # Nothing recorded: the image may still be on its way to its first replica.
        error = "no replica holds a verified copy of this image"
        return _outcome(plan.target, CopyReport(plan.target.url, error=error))
    report = CopyReport(plan.target.url)
    for source in plan.sources:
        (report,) = asyncio.run(copy_image(source, [plan.spec], plan.image, plan.options))
        if report.verified_digest:
            break
    with session_scope() as session:
        return _record(session, image_id, plan.target, report)


@dataclass(frozen=True)
class RepairPlan:
    image: ImageRef
    target: Replica
    spec: Target
    sources: tuple[str, ...]  # addresses of replicas the image is verified on, best first
    options: CopyOptions


def plan_repair(session: Session, *, image_id: int, registry_id: int) -> RepairPlan:
    image = _image(session, image_id)
    registry = session.get(Registry, registry_id)
    if registry is None:
        raise ReplicationAborted(f"registry {registry_id} no longer exists")
    target = Replica.of(registry)
    sources = queries.sources_holding(session, image_id, exclude=registry_id)
    (spec,) = _targets(session, image, (target,))
    return RepairPlan(
        image=_ref(image),
        target=target,
        spec=spec,
        sources=tuple(source.url for source in sources),
        options=_options(get_settings()),
    )


def _targets(session: Session, image: Image, replicas: Sequence[Replica]) -> tuple[Target, ...]:
    digests = {image.config_digest, *(layer.get("digest", "") for layer in image.layers or [])}
    mounts = queries.mount_sources(
        session, [r.id for r in replicas], digests, exclude_name=image.name
    )
    return tuple(
        Target(r.url, {d: path_in_registry(name) for d, name in mounts[r.id].items()})
        for r in replicas
    )


def _ref(image: Image) -> ImageRef:
    path = path_in_registry(image.name)
    return ImageRef(path, image.manifest_digest, image.media_type, image.tag or None)


def _options(settings: Settings) -> CopyOptions:
    return CopyOptions(
        concurrency=settings.replication_concurrency,
        attempts=settings.replication_attempts,
        connect_timeout=settings.registry_connect_timeout_seconds,
        timeout=settings.registry_timeout_seconds,
    )


def _record(
    session: Session, image_id: int, replica: Replica, report: CopyReport
) -> ReplicaOutcome:
    queries.record_presence(
        session,
        image_id,
        replica.id,
        verified_digest=report.verified_digest,
        error=report.error,
    )
    return _outcome(replica, report)


def _outcome(replica: Replica, report: CopyReport) -> ReplicaOutcome:
    return ReplicaOutcome(
        registry_id=replica.id,
        name=replica.name,
        required=replica.required,
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
        raise ReplicationAborted(f"image {image_id} no longer exists")
    return image
