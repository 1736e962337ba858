"""The errors the API answers with.

Every machine-readable code is declared once, in `ErrorCode`, with the one HTTP status it is
answered with and what it means; the API renders every refusal as
`{"error": {"code": ..., "message": ..., "details": {...}}}` (see `app/api/errors.py`).

`ApiError` and its subclasses are the refusals a request can get: services raise them and the one
handler renders them. Code that runs outside a request (workers, periodic jobs) raises exceptions
of its own, which are not HTTP answers (`workers.pipeline.outcomes`, `app.github.errors`,
`app.registries.replication.ReplicationAborted`).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

Fn = TypeVar("Fn", bound=Callable[..., Any])


class ErrorCode(StrEnum):
    """A machine-readable error code, its HTTP status and its meaning."""

    status: int
    meaning: str

    def __new__(cls, value: str, status: int, meaning: str) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.meaning = meaning
        return member

    # Any request
    BAD_REQUEST = "bad_request", 400, "The request could not be read (a body that does not parse)."
    NOT_FOUND = "not_found", 404, "No endpoint is at this URL."
    METHOD_NOT_ALLOWED = (
        "method_not_allowed",
        405,
        "The endpoint does not answer this method; the Allow header lists those it does.",
    )
    VALIDATION_ERROR = (
        "validation_error",
        422,
        "A parameter or the body does not match the documented schema; details.errors says where.",
    )
    INTERNAL_ERROR = (
        "internal_error",
        500,
        "Cartridge failed unexpectedly; details.incident names the logged traceback.",
    )
    DATABASE_UNAVAILABLE = (
        "database_unavailable",
        503,
        "The database is unreachable; nothing was changed. Try again shortly.",
    )

    # Access
    UNAUTHORIZED = "unauthorized", 401, "The endpoint needs an 'Authorization: Bearer' token."
    INVALID_TOKEN = "invalid_token", 401, "The bearer token is unknown or revoked."
    TOKEN_EXPIRED = "token_expired", 401, "The bearer token has expired."
    INSUFFICIENT_SCOPE = (
        "insufficient_scope",
        403,
        "The token's scope does not allow this; details name the scope needed.",
    )
    TOKEN_NOT_FOUND = "token_not_found", 404, "No token has that id."

    # Web pages (rendered as pages, never in the API)
    SIGN_IN_REQUIRED = (
        "sign_in_required",
        401,
        "The page needs a signed-in session (an API token given to /sign-in).",
    )
    CSRF_REFUSED = "csrf_refused", 403, "The form is stale or was not sent by Cartridge."

    # Registry authentication (the token realm and the pull proxy's check)
    REGISTRY_AUTH_OFF = (
        "registry_auth_off",
        404,
        "Registry authentication is off (CARTRIDGE_REGISTRY_AUTH=none).",
    )
    UNKNOWN_SERVICE = "unknown_service", 400, "The token was asked for another registry service."
    INVALID_SCOPE = "invalid_scope", 400, "A scope is not repository:<name>:<actions>."
    CREDENTIALS_REQUIRED = (
        "credentials_required",
        401,
        "The registry needs credentials: any user name, an API token as the password.",
    )
    INVALID_CREDENTIALS = (
        "invalid_credentials",
        401,
        "The Basic credentials do not parse (base64 of user:password).",
    )
    PULL_NOT_ALLOWED = (
        "pull_not_allowed",
        401,
        "The registry token does not allow pulling this repository.",
    )

    # Reconciling with GitHub
    GITHUB_FAILED = "github_failed", 502, "GitHub refused or failed to list the branches."
    GITHUB_NOT_CONFIGURED = (
        "github_not_configured",
        409,
        "Cartridge has no GitHub credentials (CARTRIDGE_GITHUB_TOKEN or a GitHub App).",
    )
    GITHUB_RATE_LIMITED = (
        "github_rate_limited",
        503,
        "GitHub asked Cartridge to wait; details.retry_at says until when.",
    )
    SECRET_UNDECRYPTABLE = (
        "secret_undecryptable",
        500,
        "A stored secret opens with none of CARTRIDGE_SECRET_KEYS: the installation's keys are "
        "wrong.",
    )

    # Lists
    INVALID_CURSOR = "invalid_cursor", 400, "The cursor is not one this API returned."
    INVALID_LIMIT = "invalid_limit", 400, "The page size is outside the allowed range."
    INVALID_FILTER = "invalid_filter", 400, "The filters contradict each other (since >= until)."

    # Repositories
    REPOSITORY_NOT_FOUND = "repository_not_found", 404, "No repository of that name is registered."
    REPOSITORY_EXISTS = "repository_exists", 409, "A repository of that name is registered."

    # Builds
    BUILD_NOT_FOUND = "build_not_found", 404, "No build has that id."
    INVALID_TRANSITION = (
        "invalid_transition",
        409,
        "The build's current status does not allow the action (retry a final build, cancel a "
        "queued or running one).",
    )
    INVALID_ATTEMPT = "invalid_attempt", 400, "The build has no attempt of that number."
    INVALID_LAST_EVENT_ID = (
        "invalid_last_event_id",
        400,
        "The Last-Event-ID header (or ?after=) is not an event id the stream sent.",
    )
    NO_GREEN_BUILD = "no_green_build", 404, "The branch has no succeeded build."
    BRANCH_DELETED = (
        "branch_deleted",
        404,
        "The branch was deleted and has no succeeded build since.",
    )

    # Images
    IMAGE_NOT_FOUND = "image_not_found", 404, "No image has that digest, or that commit."
    IMAGE_DELETED = "image_deleted", 404, "Retention deleted the image (or is deleting it)."

    # Registries and the pull proxy
    REGISTRY_NOT_FOUND = "registry_not_found", 404, "No registry replica has that name."
    REGISTRY_EXISTS = "registry_exists", 409, "A registry replica of that name exists."
    REGISTRY_SCHEME_MISMATCH = (
        "registry_scheme_mismatch",
        409,
        "The replica would be reached over http while the others are over https, or the reverse; "
        "the pull proxy reaches every replica with one scheme.",
    )
    INVALID_REGISTRY_NAME = "invalid_registry_name", 400, "The replica name is not allowed."
    INVALID_REGISTRY_URL = (
        "invalid_registry_url",
        400,
        "The replica address is not host[:port], optionally with http:// or https://.",
    )
    REGISTRY_DECLARED = (
        "registry_declared",
        409,
        "The replica is declared in the settings (CARTRIDGE_REGISTRIES or its file); change or "
        "remove it there.",
    )
    PROXY_CONFIG_INVALID = (
        "proxy_config_invalid",
        500,
        "nginx refuses the generated proxy config; details carry its message.",
    )
    NGINX_UNAVAILABLE = "nginx_unavailable", 503, "nginx could not be run to check the config."

    # Operator commands (the CLI and start-up checks, not answered over HTTP)
    INVALID_DECLARED_REGISTRIES = (
        "invalid_declared_registries",
        400,
        "CARTRIDGE_REGISTRIES or CARTRIDGE_REGISTRIES_FILE is not a list of distinct replicas.",
    )
    REGISTRY_GC_LAST_REPLICA = (
        "registry_gc_last_replica",
        409,
        "The replica is the only one in service; collecting it would stop every pull.",
    )
    REGISTRY_GC_PUSH_REPLICA = (
        "registry_gc_push_replica",
        409,
        "The replica is the one builds push to; point the build hosts elsewhere first.",
    )
    REGISTRY_GC_FAILED = "registry_gc_failed", 503, "The registry's garbage collection failed."
    REGISTRY_GC_COMMAND_FAILED = (
        "registry_gc_command_failed",
        503,
        "The command that stops or starts the replica failed.",
    )
    REGISTRY_DOWN = "registry_down", 503, "The replica did not answer after the collection."
    PROXY_CONFIG_NOT_LOADED = (
        "proxy_config_not_loaded",
        503,
        "nginx did not load the pull proxy's config; the error says why.",
    )

    # Webhooks
    SIGNATURE_MISSING = (
        "signature_missing",
        401,
        "The delivery has no X-Hub-Signature-256 header.",
    )
    SIGNATURE_INVALID = (
        "signature_invalid",
        401,
        "X-Hub-Signature-256 does not sign the body with the global secret or the secret of the "
        "repository the body names.",
    )
    MISSING_EVENT_HEADER = "missing_event_header", 400, "The X-GitHub-Event header is missing."
    MISSING_DELIVERY_HEADER = (
        "missing_delivery_header",
        400,
        "The X-GitHub-Delivery header is missing.",
    )
    INVALID_HEADER = (
        "invalid_header",
        400,
        "A header is malformed (a Content-Length that is not a number, a value too long).",
    )
    MALFORMED_FORM = "malformed_form", 400, "The form-encoded body cannot be parsed."
    MISSING_PAYLOAD_FIELD = (
        "missing_payload_field",
        400,
        "The form-encoded body has no 'payload' field.",
    )
    MALFORMED_JSON = "malformed_json", 400, "The payload is not a JSON object."
    JSON_TOO_DEEP = "json_too_deep", 400, "The payload nests objects or arrays too deeply."
    NUL_CHARACTER = "nul_character", 400, "The payload has a NUL character (\\u0000) in a string."
    INVALID_PUSH_PAYLOAD = (
        "invalid_push_payload",
        400,
        "The push payload lacks fields a push must have; details.errors says which.",
    )
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, "The body exceeds the webhook size limit."
    UNSUPPORTED_MEDIA_TYPE = (
        "unsupported_media_type",
        415,
        "Webhooks are accepted as application/json or application/x-www-form-urlencoded only.",
    )


class ApiError(Exception):
    """A refusal the API answers with `code`'s status, the message and the details.

    Each subclass stands for one HTTP status; the code given must be one of that status."""

    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        if code.status != self.status_code:
            raise TypeError(f"{code.value} is answered with {code.status}, not {self.status_code}")
        super().__init__(message)
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    """401. The challenge defaults to the API's bearer tokens (RFC 6750)."""

    status_code = 401

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode,
        challenge: str | None = None,
        **details: Any,
    ) -> None:
        if challenge is None:
            challenge = bearer_challenge(code)
        super().__init__(message, code=code, headers={"WWW-Authenticate": challenge}, **details)


def bearer_challenge(code: ErrorCode) -> str:
    # RFC 6750 section 3: no error attribute when the request had no credentials at all.
    if code is ErrorCode.INVALID_TOKEN:
        return 'Bearer realm="cartridge", error="invalid_token"'
    return 'Bearer realm="cartridge"'


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class InvalidTransition(Conflict):
    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=ErrorCode.INVALID_TRANSITION, **details)


class PayloadTooLarge(ApiError):
    status_code = 413


class UnsupportedMediaType(ApiError):
    status_code = 415


class ServerError(ApiError):
    status_code = 500


class BadGateway(ApiError):
    status_code = 502


class ServiceUnavailable(ApiError):
    status_code = 503


def raises(*codes: ErrorCode) -> Callable[[Fn], Fn]:
    """Declares the codes a request dependency can answer with, so that every route using it
    documents them (`app.api.responses`)."""

    def mark(function: Fn) -> Fn:
        function.__dict__["error_codes"] = (*declared_errors(function), *codes)
        return function

    return mark


def declared_errors(function: Callable[..., Any]) -> tuple[ErrorCode, ...]:
    return tuple(getattr(function, "__dict__", {}).get("error_codes", ()))
