"""The error answers of each operation, in the OpenAPI document.

A route lists the codes it raises itself with `responses=errors(ErrorCode.X, ...)`; a dependency
lists those it raises with `@raises(...)` (see `app.errors`), and every route that uses it
documents them too; routes with parameters or a body document `validation_error`. Each status is
documented with the envelope schema narrowed to the codes the operation can answer with, so a
response with another code does not conform to the document.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, Field

from app.errors import ErrorCode, declared_errors

CODES_KEY = "x-error-codes"
SCHEMA_NAME = "Error"
_BY_VALUE = {code.value: code for code in ErrorCode}


class ErrorBody(BaseModel):
    code: ErrorCode = Field(description="Machine-readable; one code always means one thing.")
    message: str = Field(description="For people: what went wrong and what to do.")
    details: dict[str, Any] | None = Field(
        default=None, description="Facts about this error (absent when there are none)."
    )


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the given codes, grouped by their status."""
    by_status: dict[int, list[ErrorCode]] = defaultdict(list)
    for code in codes:
        by_status[code.status].append(code)
    return {status: _response(listed) for status, listed in sorted(by_status.items())}


def _response(codes: Iterable[ErrorCode]) -> dict[str, Any]:
    listed = sorted(set(codes), key=lambda code: code.value)
    narrowed = {
        "allOf": [
            {"$ref": f"#/components/schemas/{SCHEMA_NAME}"},
            {
                "properties": {
                    "error": {"properties": {"code": {"enum": [c.value for c in listed]}}}
                }
            },
        ]
    }
    response: dict[str, Any] = {
        "description": "\n".join(f"- `{code.value}`: {code.meaning}" for code in listed),
        "content": {"application/json": {"schema": narrowed}},
        CODES_KEY: [code.value for code in listed],
    }
    if listed[0].status == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "The challenge: how to authenticate.",
                "schema": {"type": "string"},
            }
        }
    return response


def document_errors(app: FastAPI) -> None:
    """Makes the app's OpenAPI document list every error answer of every operation: those its
    route declares, those of its dependencies, `validation_error` where it takes parameters or
    a body, `bad_request` where it reads a body, `not_found` where it has path parameters; and
    carry the envelope schema."""
    app.openapi = _openapi_of(app)  # type: ignore[method-assign]


def _openapi_of(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            for route in iter_route_contexts(app.routes):
                if isinstance(route.original_route, APIRoute) and route.include_in_schema:
                    path = document["paths"][route.path_format]
                    for method in route.methods or ():
                        _complete(path[method.lower()], route)
            _add_schemas(document.setdefault("components", {}).setdefault("schemas", {}))
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


def _complete(operation: dict[str, Any], route: RouteContext) -> None:
    responses = operation["responses"]
    codes: set[ErrorCode] = set()
    for status, response in list(responses.items()):
        if CODES_KEY in response:
            codes |= {_BY_VALUE[value] for value in response[CODES_KEY]}
            del responses[status]
    responses.pop("422", None)  # FastAPI's own, with its own schema
    for call in _dependency_calls(route.dependant):
        codes |= set(declared_errors(call))
    if get_flat_params(route.dependant) or route.body_field is not None:
        codes.add(ErrorCode.VALIDATION_ERROR)
    if route.body_field is not None:  # a body that is not even text (not UTF-8)
        codes.add(ErrorCode.BAD_REQUEST)
    if route.dependant.path_params:  # a value (a newline, say) that makes the URL match no route
        codes.add(ErrorCode.NOT_FOUND)
    responses.update({str(status): body for status, body in errors(*codes).items()})
    operation["responses"] = dict(sorted(responses.items()))


def _dependency_calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _dependency_calls(sub)


def _add_schemas(schemas: dict[str, Any]) -> None:
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(envelope.pop("$defs", {}))
    envelope["title"] = SCHEMA_NAME
    schemas[SCHEMA_NAME] = envelope
