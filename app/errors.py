"""Typed domain errors: each carries its HTTP status and a machine-readable code."""

from __future__ import annotations

from typing import Any


class CartridgeError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(CartridgeError):
    status_code = 400
    code = "bad_request"


class Unauthorized(CartridgeError):
    status_code = 401
    code = "unauthorized"


class Forbidden(CartridgeError):
    status_code = 403
    code = "forbidden"


class NotFound(CartridgeError):
    status_code = 404
    code = "not_found"


class Conflict(CartridgeError):
    status_code = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class PayloadTooLarge(CartridgeError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(CartridgeError):
    status_code = 415
    code = "unsupported_media_type"


class BadGateway(CartridgeError):
    status_code = 502
    code = "bad_gateway"


class ServiceUnavailable(CartridgeError):
    status_code = 503
    code = "service_unavailable"
