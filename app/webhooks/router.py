"""`POST /webhooks/github`: the GitHub receiver (HTTP only; the rules are in `service`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.api.responses import errors
from app.config import get_settings
from app.errors import BadRequest, ErrorCode, PayloadTooLarge, UnsupportedMediaType
from app.logs import log_context
from app.webhooks import service
from app.webhooks.intake import get_writer
from app.webhooks.schemas import DeliveryResult

router = APIRouter(tags=["webhooks"])


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _capped_body(request: Request) -> bytes:
    """The raw body, refused with 413 before it is read whole when it exceeds the cap: on its
    declared Content-Length at once, or while a chunked body streams in."""
    limit = get_settings().webhook_max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(
                "The Content-Length header is not a number.", code=ErrorCode.INVALID_HEADER
            )
        if int(declared) > limit:
            raise _too_large(limit)
    media_type = _media_type(request)
    if media_type not in service.SUPPORTED_MEDIA_TYPES:
        raise UnsupportedMediaType(
            "Webhooks must be sent as application/json or application/x-www-form-urlencoded.",
            code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            content_type=media_type[:100],
        )
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Webhook bodies are limited to {limit} bytes.",
        code=ErrorCode.PAYLOAD_TOO_LARGE,
        limit=limit,
    )


@router.post(
    "/webhooks/github",
    response_model=DeliveryResult,
    responses=errors(
        ErrorCode.SIGNATURE_MISSING,
        ErrorCode.SIGNATURE_INVALID,
        ErrorCode.MISSING_EVENT_HEADER,
        ErrorCode.MISSING_DELIVERY_HEADER,
        ErrorCode.INVALID_HEADER,
        ErrorCode.MALFORMED_FORM,
        ErrorCode.MISSING_PAYLOAD_FIELD,
        ErrorCode.MALFORMED_JSON,
        ErrorCode.JSON_TOO_DEEP,
        ErrorCode.NUL_CHARACTER,
        ErrorCode.INVALID_PUSH_PAYLOAD,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        ErrorCode.DATABASE_UNAVAILABLE,
        ErrorCode.SECRET_UNDECRYPTABLE,
    ),
)
async def receive_github_webhook(
    request: Request, body: Annotated[bytes, Depends(_capped_body)]
) -> DeliveryResult:
    """Receives a GitHub delivery: checks its signature, records it once per
    `X-GitHub-Delivery`, and queues a build for a branch push. Answers after the commit."""
    headers = request.headers
    incoming = service.IncomingDelivery(
        body=body,
        media_type=_media_type(request),
        event=headers.get("x-github-event"),
        guid=headers.get("x-github-delivery"),
        signature=headers.get("x-hub-signature-256"),
    )
    with log_context(delivery=incoming.guid, event=incoming.event):
        return await get_writer().submit(incoming)
