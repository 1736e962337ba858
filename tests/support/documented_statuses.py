"""A pytest plugin: every answer a test receives from the API through a TestClient must be
documented in the app's OpenAPI document. Its status must be listed for the operation (method and
path template) that answered, and an error's code must be one that status lists
(`x-error-codes`). A test whose requests got an undocumented answer fails, naming it.

Requests that match no documented operation (an unknown path, a method the resource does not
have, the web pages) are not checked here: they are not operations of the document.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.testclient import TestClient

from app.api.responses import CODES_KEY


@dataclass
class Observed:
    """Every (method, path template, status) answered during the run, and the undocumented ones
    answered during the current test."""

    answers: set[tuple[str, str, int]] = field(default_factory=set)
    undocumented: list[str] = field(default_factory=list)


OBSERVED = Observed()
_original_send = TestClient.send


def check_answer(app: Any, method: str, path: str, response: httpx.Response) -> str | None:
    """Why the answer is not documented, or None when it is (or is not an operation's)."""
    if not isinstance(app, FastAPI):
        return None
    template = _operation(app, method, path)
    if template is None:
        return None
    status = response.status_code
    OBSERVED.answers.add((method, template, status))
    label = f"{method} {template}"
    responses = app.openapi()["paths"][template][method.lower()]["responses"]
    documented = responses.get(str(status)) or responses.get("default")
    if documented is None:
        return f"{label} answered {status}, which its OpenAPI operation does not list"
    code = _error_code(response)
    if code is not None and code not in documented.get(CODES_KEY, ()):
        return f"{label} answered {status} with code {code!r}, which the document does not list"
    return None


def _operation(app: FastAPI, method: str, path: str) -> str | None:
    # The resource is the first route whose path matches, whatever its method (as the app's
    # MethodCheck sees it); the answer is an operation's if that resource has the method.
    for route in iter_route_contexts(app.routes):
        if route.path_regex is None or not route.path_regex.match(path):
            continue
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            return None
        template = str(route.path_format)
        documented = method.lower() in app.openapi()["paths"].get(template, {})
        return template if documented else None
    return None


def _error_code(response: httpx.Response) -> str | None:
    if response.status_code < 400 or not response.is_stream_consumed:
        return None
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _send(self: TestClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
    response = _original_send(self, request, **kwargs)
    problem = check_answer(self.app, request.method, request.url.path, response)
    if problem is not None:
        OBSERVED.undocumented.append(problem)
    return response


TestClient.send = _send  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    OBSERVED.undocumented.clear()
    result = yield
    if OBSERVED.undocumented:
        problems = sorted(set(OBSERVED.undocumented))
        OBSERVED.undocumented.clear()
        pytest.fail("undocumented answers:\n  " + "\n  ".join(problems), pytrace=False)
    return result
