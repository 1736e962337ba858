"""One rendering for every error answer: Cartridge's refusals, validation errors, the router's
own 404 and 405, a database that is down and unexpected failures all answer
`{"error": {"code", "message", "details"?}}` with the status of their `ErrorCode`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import ApiError, ErrorCode

log = logging.getLogger(__name__)

# The router's own refusals, by status; any other status it raises is read as a bad request.
HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
}


def error_response(
    code: ErrorCode,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **details: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code.value, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=code.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, _database_down)  # type: ignore[arg-type]
    app.add_exception_handler(DataError, _unstorable)  # type: ignore[arg-type]
    # Starlette answers this one from its outermost middleware and re-raises the exception, so
    # the server logs it (and tests see it) as well.
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(MethodCheck)


async def _refused(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers or None)


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return error_response(ErrorCode.VALIDATION_ERROR, "The request is not valid.", errors=errors)


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    if code is ErrorCode.NOT_FOUND:
        message = "No endpoint is at this URL."
    elif code is ErrorCode.METHOD_NOT_ALLOWED:
        message = "This endpoint does not answer this method."
    else:
        message = str(exc.detail)
    response = error_response(code, message, headers=exc.headers)
    response.status_code = exc.status_code
    return response


async def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
    log.error("database unavailable: %s", exc.orig)
    return error_response(
        ErrorCode.DATABASE_UNAVAILABLE, "The database is unreachable; try again shortly."
    )


async def _unstorable(_request: Request, exc: DataError) -> JSONResponse:
    # The database refused a value the request carried (a NUL character, a number out of range)
    # that validation let through: still the request's fault, and nothing was written.
    log.warning("a request value the database refuses: %s", str(exc.orig).splitlines()[0])
    return error_response(
        ErrorCode.VALIDATION_ERROR,
        "A value in the request cannot be stored or looked up (a NUL character, a number out "
        "of range).",
        errors=[],
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    incident = secrets.token_hex(6)
    log.error(
        "unexpected error answering %s %s (incident %s)",
        request.method,
        request.url.path,
        incident,
        exc_info=exc,
    )
    return error_response(
        ErrorCode.INTERNAL_ERROR,
        "Cartridge failed to answer this request; the incident is in its log.",
        incident=incident,
    )


# A route's path pattern and the methods of its resource, or a mount and None.
Resource = tuple[Any, set[str] | None]


class MethodCheck:
    """Answers 405 for a method the addressed resource does not have, with an `Allow` header
    listing exactly the methods it has.

    Starlette routes on (path, method) pairs, so a method missing on one resource can fall
    through to a parameterized sibling (`PATCH /registries/proxy-config` would reach
    `PATCH /registries/{name}`), and its 405 names the methods of one route only. Here the
    resource is the path template of the first route whose path matches, as the router sees it,
    and its methods are those of every route with that template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._resources: list[Resource] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._resources is None:  # the routes are known once the app is serving
                self._resources = _resources(scope["app"])
            allowed = _allowed_methods(self._resources, scope)
            if allowed is not None and scope["method"] not in allowed:
                allow = ", ".join(sorted(allowed))
                response = error_response(
                    ErrorCode.METHOD_NOT_ALLOWED,
                    f"This endpoint answers {allow} only.",
                    headers={"Allow": allow},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _allowed_methods(resources: list[Resource], scope: Scope) -> set[str] | None:
    path = scope["path"]
    root_path = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    for pattern, methods in resources:
        if methods is None:  # a mount (static files, another app): it answers for itself
            if pattern.matches(scope)[0] is not Match.NONE:
                return None
        elif pattern.match(path):
            return methods
    return None


def _resources(app: Any) -> list[Resource]:
    """For each route in routing order: its path pattern and the methods of its path template
    (every route with that template); a mount comes with None."""
    routes = list(iter_route_contexts(app.routes))
    by_template: dict[str, set[str]] = {}
    for route in routes:
        if route.path_format is not None and route.methods:
            by_template.setdefault(route.path_format, set()).update(route.methods)
    resources: list[Resource] = []
    for route in routes:
        if route.path_format is not None and route.methods:
            resources.append((route.path_regex, by_template[route.path_format]))
        elif isinstance(route.original_route, Mount):
            resources.append((route.original_route, None))
    return resources
