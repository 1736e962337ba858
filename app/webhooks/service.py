"""The GitHub webhook receiver's rules: authenticate, dedupe, record, queue.

Nothing here is slow: the delivery, the push, the build and its outbox entry are written in the
request's transaction and the build job is published after the commit, off the request thread.
Requests that are not authenticated learn nothing but "401"; only an authenticated delivery gets
detailed 400s, and only an authenticated, well-formed delivery is recorded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.builds.queueing import PushValues, branch_is_built, queue_push, record_push
from app.config import Settings, get_settings
from app.errors import BadRequest, Unauthorized
from app.models import DeliveryOutcome, PushDecision, Repository
from app.repos.queries import find_by_full_name
from app.webhooks import queries
from app.webhooks.schemas import DeliveryResult, PushEvent
from app.webhooks.signature import signature_matches

log = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
SUPPORTED_MEDIA_TYPES = frozenset({JSON_MEDIA_TYPE, FORM_MEDIA_TYPE})
MAX_HEADER_LENGTH = 100  # the width of webhook_deliveries.guid and .event


@dataclass(frozen=True)
class IncomingDelivery:
    body: bytes
    media_type: str
    event: str | None
    guid: str | None
    signature: str | None


@dataclass(frozen=True)
class PushPlan:
    """What a push leads to, decided before anything is written."""

    branch: str | None
    tag: str | None
    decision: PushDecision
    outcome: DeliveryOutcome
    detail: str | None


def receive(session: Session, incoming: IncomingDelivery) -> DeliveryResult:
    settings = get_settings()
    signer = authenticate(session, incoming, settings)
    event = _required_header(incoming.event, "X-GitHub-Event", "missing_event_header").lower()
    guid = _required_header(incoming.guid, "X-GitHub-Delivery", "missing_delivery_header")
    payload = payload_json(incoming)
    if event == "push":
        result = _receive_push(session, settings, guid, payload, signer)
    else:
        result = _receive_other(session, event, guid, payload, signer)
    log.info(
        "webhook delivery %s (%s): %s%s",
        guid,
        event,
        result.outcome.value,
        f" build {result.build_id}" if result.build_id else "",
    )
    return result


def authenticate(
    session: Session, incoming: IncomingDelivery, settings: Settings
) -> Repository | None:
    """Checks the signature against the secret of the repository the payload names, if it has
    one (then no other secret signs for it), else against the global secret. Returns the
    repository when its own secret signed the delivery."""
    if not incoming.signature:
        raise Unauthorized(
            "The delivery has no X-Hub-Signature-256 header; give the webhook a secret.",
            code="signature_missing",
        )
    full_name = _full_name_before_authentication(incoming)
    repository = find_by_full_name(session, full_name) if full_name else None
    if repository is not None and repository.webhook_secret:
        if signature_matches(incoming.body, incoming.signature, repository.webhook_secret):
            return repository
    else:
        global_secret = (
            settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        )
        if global_secret and signature_matches(incoming.body, incoming.signature, global_secret):
            return None
    raise Unauthorized(
        "The X-Hub-Signature-256 header does not match the body.", code="signature_invalid"
    )


def _full_name_before_authentication(incoming: IncomingDelivery) -> str | None:
    # Unauthenticated input: any problem means "no repository", never a detailed error.
    try:
        document = json.loads(payload_json(incoming))
    except (BadRequest, ValueError):
        return None
    return _full_name_of(document)


def _full_name_of(document: Any) -> str | None:
    repository = document.get("repository") if isinstance(document, dict) else None
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    return full_name if isinstance(full_name, str) and full_name else None


def _required_header(value: str | None, name: str, code: str) -> str:
    value = (value or "").strip()
    if not value:
        raise BadRequest(f"The {name} header is missing.", code=code)
    if len(value) > MAX_HEADER_LENGTH:
        raise BadRequest(
            f"The {name} header is longer than {MAX_HEADER_LENGTH} characters.",
            code="invalid_header",
        )
    return value


def payload_json(incoming: IncomingDelivery) -> bytes:
    """The JSON document: the body itself, or the `payload` field of a form body."""
    if incoming.media_type != FORM_MEDIA_TYPE:
        return incoming.body
    try:
        fields = parse_qs(incoming.body, max_num_fields=20, strict_parsing=False)
    except ValueError as exc:
        raise BadRequest("The form body cannot be parsed.", code="malformed_form") from exc
    values = fields.get(b"payload")
    if not values:
        raise BadRequest("The form body has no 'payload' field.", code="missing_payload_field")
    return values[0]


def _parse_object(payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except ValueError as exc:
        raise BadRequest("The payload is not valid JSON.", code="malformed_json") from exc
    if not isinstance(document, dict):
        raise BadRequest("The payload is not a JSON object.", code="malformed_json")
    return document


def _parse_push(payload: bytes) -> PushEvent:
    try:
        return PushEvent.model_validate_json(payload)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        if any(error["type"] == "json_invalid" for error in errors):
            raise BadRequest("The payload is not valid JSON.", code="malformed_json") from exc
        raise BadRequest(
            "The push payload lacks fields a push must have.",
            code="invalid_push_payload",
            errors=[
                {"field": ".".join(str(part) for part in error["loc"]), "problem": error["msg"]}
                for error in errors
            ],
        ) from exc


def _receive_other(
    session: Session, event: str, guid: str, payload: bytes, signer: Repository | None
) -> DeliveryResult:
    full_name = _full_name_of(_parse_object(payload))
    if event == "ping":
        outcome, detail = DeliveryOutcome.PING, "pong"
    else:
        outcome, detail = DeliveryOutcome.IGNORED, f"Cartridge does not act on {event} events"
    _, result = _record(
        session,
        event=event,
        guid=guid,
        outcome=outcome,
        detail=detail,
        full_name=full_name,
        repository=signer,
    )
    return result


def _receive_push(
    session: Session,
    settings: Settings,
    guid: str,
    payload: bytes,
    signer: Repository | None,
) -> DeliveryResult:
    event = _parse_push(payload)
    full_name = event.repository.full_name
    repository = signer or find_by_full_name(session, full_name)
    if repository is None and _auto_registers(full_name, settings):
        repository = queries.register_repository(session, event.repository)
        log.info("registered repository %s from its first push", repository.full_name)
    if repository is None:
        _, result = _record(
            session,
            event="push",
            guid=guid,
            outcome=DeliveryOutcome.UNKNOWN_REPOSITORY,
            detail=f"{full_name} is not registered with Cartridge",
            full_name=full_name,
            repository=None,
        )
        return result
    plan = plan_push(repository, event)
    delivery_pk, result = _record(
        session,
        event="push",
        guid=guid,
        outcome=plan.outcome,
        detail=plan.detail,
        full_name=full_name,
        repository=repository,
    )
    if delivery_pk is None:
        return result
    push = _push_values(repository, event, plan, delivery_pk)
    if plan.decision is not PushDecision.BUILT:
        return result.model_copy(update={"push_id": record_push(session, push)})
    queued = queue_push(session, repository, push)
    return result.model_copy(
        update={
            "push_id": queued.push_id,
            "build_id": queued.build_id,
            "build_status": queued.status,
            "build_attempt": queued.attempt,
            "detail": f"build {queued.action.value}",
            "superseded_build_ids": queued.superseded_build_ids,
        }
    )


def _auto_registers(full_name: str, settings: Settings) -> bool:
    owner = full_name.split("/", 1)[0].lower()
    return owner in {name.lower() for name in settings.auto_register_owners}


def plan_push(repository: Repository, event: PushEvent) -> PushPlan:
    ref = event.ref
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
    branch, tag = branch or None, tag or None
    if event.is_deletion:
        what = f"branch {branch}" if branch else f"tag {tag}" if tag else ref
        return PushPlan(
            branch, tag, PushDecision.DELETED, DeliveryOutcome.RECORDED, f"{what} deleted"
        )
    if branch is not None:
        if branch_is_built(repository, branch):
            return PushPlan(branch, None, PushDecision.BUILT, DeliveryOutcome.ACCEPTED, None)
        return PushPlan(
            branch,
            None,
            PushDecision.FILTERED,
            DeliveryOutcome.FILTERED,
            f"branch {branch} does not match the repository's branch filters",
        )
    if tag is not None:
        if repository.build_tags:
            return PushPlan(None, tag, PushDecision.BUILT, DeliveryOutcome.ACCEPTED, None)
        return PushPlan(
            None,
            tag,
            PushDecision.TAG_SKIPPED,
            DeliveryOutcome.RECORDED,
            f"tag {tag} recorded; tag builds are off for this repository",
        )
    return PushPlan(
        None,
        None,
        PushDecision.IGNORED,
        DeliveryOutcome.RECORDED,
        f"{ref} is neither a branch nor a tag",
    )


def _push_values(
    repository: Repository, event: PushEvent, plan: PushPlan, delivery_pk: int
) -> PushValues:
    message = event.head_commit.message if event.head_commit else None
    pusher = event.pusher.name if event.pusher else None
    return PushValues(
        repository_id=repository.id,
        webhook_delivery_id=delivery_pk,
        ref=event.ref,
        branch=plan.branch,
        tag=plan.tag,
        before_sha=event.before,
        after_sha=event.after,
        forced=event.forced,
        created=event.is_creation,
        deleted=event.is_deletion,
        pusher=pusher[:255] if pusher else None,
        head_commit_message=message[:1000] if message else None,
        decision=plan.decision,
    )


def _record(
    session: Session,
    *,
    event: str,
    guid: str,
    outcome: DeliveryOutcome,
    detail: str | None,
    full_name: str | None,
    repository: Repository | None,
) -> tuple[int | None, DeliveryResult]:
    """Records the delivery and returns its row id, or None and a DUPLICATE result when that
    `X-GitHub-Delivery` id was already recorded."""
    row_id = queries.record_delivery(
        session,
        guid=guid,
        event=event,
        outcome=outcome.value,
        detail=detail,
        repository_full_name=full_name[:200] if full_name else None,
        repository_id=repository.id if repository else None,
    )
    if row_id is None:
        first = queries.recorded_outcome(session, guid)
        duplicate = DeliveryResult(
            delivery=guid,
            event=event,
            outcome=DeliveryOutcome.DUPLICATE,
            detail=f"already received (outcome: {first}); nothing done again",
            repository=full_name,
        )
        return None, duplicate
    result = DeliveryResult(
        delivery=guid, event=event, outcome=outcome, detail=detail, repository=full_name
    )
    return row_id, result
