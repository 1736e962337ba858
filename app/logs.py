"""Process logging: text for people in development, one JSON object per line for machines in
production (`CARTRIDGE_LOG_FORMAT`), with the context of the work at hand (build, repository,
SHA, attempt, delivery, request) on every line, and the configured secrets never in any line.

Code adds context with `log_context(build_id=..., ...)`; it lasts for the `with` block, in the
thread or task that entered it (a ContextVar, so concurrent requests do not mix).
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings

REDACTED = "********"
_CONTEXT: ContextVar[dict[str, Any]] = ContextVar("cartridge_log_context", default={})  # noqa: B039 (never mutated)
_HANDLER_NAME = "cartridge"
# Loggers that install their own handlers; they go through the root logger instead.
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get())


class _Redact(logging.Filter):
    """Replaces every configured secret in the message (and a traceback) before formatting."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        record.cartridge_context = current_context()
        if not self.secrets:
            return True
        message = self.scrub(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        line.update(getattr(record, "cartridge_context", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = getattr(record, "cartridge_context", {})
        if context:
            text += " [" + " ".join(f"{key}={value}" for key, value in context.items()) + "]"
        return text


def log_format(settings: Settings) -> str:
    if settings.log_format:
        return settings.log_format
    return "json" if settings.environment == "production" else "text"


def configured_secrets(settings: Settings) -> list[str]:
    values = [
        settings.webhook_secret,
        settings.git_token,
        settings.github_token,
        settings.github_app_private_key,
        settings.session_secret,
    ]
    secrets = [value.get_secret_value() for value in values if value is not None]
    # A PEM key is logged (if ever) line by line as often as whole.
    return secrets + [line for s in secrets for line in s.splitlines() if len(line) >= 16]


def configure_logging(settings: Settings) -> None:
    """One handler on the root logger, in the configured format; safe to call again."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format(settings) == "json" else TextFormatter())
    handler.addFilter(_Redact(configured_secrets(settings)))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


class RequestIdMiddleware:
    """Gives each HTTP request an id (the client's `X-Request-ID` when it sends a sane one),
    in the log context of everything the request does and in the response's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if 0 < len(sent) <= 100 and sent.isprintable() else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)
