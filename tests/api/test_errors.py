"""Every error answer uses one envelope and is documented; bad input is a 4xx, never a 500."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import app as app_package
from app import errors as error_classes
from app.api.errors import install_error_handlers
from app.api.responses import CODES_KEY, document_errors, errors
from app.errors import ApiError, BadRequest, ErrorCode, NotFound
from tests.support.documented_statuses import OBSERVED, check_answer

BEYOND_BIGINT = str(2**63)
BUILD_ENDPOINTS = [
    ("GET", "/api/v1/builds/{}"),
    ("GET", "/api/v1/builds/{}/log"),
    ("GET", "/api/v1/builds/{}/log/stream"),
    ("POST", "/api/v1/builds/{}/retry"),
    ("POST", "/api/v1/builds/{}/cancel"),
    ("GET", "/api/v1/builds/{}/statuses"),
]


def _error(response) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "details"}
    return response.status_code, body["error"]["code"]


def test_an_unknown_path_is_a_404_in_the_envelope(client: TestClient) -> None:
    for path in ("/nope", "/api/v1/nope", "/api/v1/builds/1/nope"):
        assert _error(client.get(path)) == (404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/builds", "GET"),
        ("DELETE", "/api/v1/repos", "GET, POST"),
        ("OPTIONS", "/api/v1/registries/r1", "DELETE, GET, PATCH"),
        # Without the check, these reach PATCH/DELETE /registries/{name}.
        ("PATCH", "/api/v1/registries/proxy-config", "GET"),
        ("DELETE", "/api/v1/registries/proxy-config", "GET"),
        ("OPTIONS", "/api/v1/registries/proxy-config", "GET"),
        ("GET", "/webhooks/github", "POST"),
        ("HEAD", "/api/v1/builds/1/retry", "POST"),
        ("TRACE", "/healthz", "GET"),
    ],
)
def test_a_method_the_resource_lacks_is_a_405_naming_its_methods(
    client: TestClient, auth: dict[str, str], method: str, path: str, allow: str
) -> None:
    response = client.request(method, path, headers=auth)
    if method == "HEAD":  # no body
        assert response.status_code == 405
    else:
        assert _error(response) == (405, "method_not_allowed")
    assert response.headers["allow"] == allow


def test_an_unexpected_failure_is_a_500_in_the_envelope_with_a_logged_incident(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from app.registries import queries

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(queries, "list_registries", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/registries")
    assert _error(response) == (500, "internal_error")
    incident = response.json()["error"]["details"]["incident"]
    assert "a bug" not in response.text
    logged = [r for r in caplog.records if r.name == "app.api.errors"]
    assert [r.levelno for r in logged] == [logging.ERROR]
    assert incident in logged[0].getMessage()
    # The traceback is logged, scrubbed of secrets by the log filter (which keeps it as text).
    traceback = logged[0].exc_text or ""
    assert logged[0].exc_info is not None or "RuntimeError: a bug" in traceback
    OBSERVED.undocumented.clear()  # an unexpected 500 is undocumented by nature


def test_a_401_carries_the_bearer_challenge(client: TestClient) -> None:
    missing = client.post("/api/v1/builds/1/retry")
    assert _error(missing) == (401, "unauthorized")
    assert missing.headers["www-authenticate"] == 'Bearer realm="cartridge"'
    wrong = client.post("/api/v1/builds/1/retry", headers={"Authorization": "Bearer nope"})
    assert _error(wrong) == (401, "invalid_token")
    assert wrong.headers["www-authenticate"] == 'Bearer realm="cartridge", error="invalid_token"'


@pytest.mark.parametrize(("method", "template"), BUILD_ENDPOINTS)
def test_a_build_id_beyond_the_64_bit_range_is_a_422(
    client: TestClient, auth: dict[str, str], method: str, template: str
) -> None:
    for build_id in (BEYOND_BIGINT, "99999999999999999999999", "0", "-1"):
        response = client.request(method, template.format(build_id), headers=auth)
        assert _error(response) == (422, "validation_error"), build_id
    largest = client.request(method, template.format(2**63 - 1), headers=auth)
    assert _error(largest) == (404, "build_not_found")


def test_offsets_attempts_cursors_and_event_ids_beyond_the_database_range_are_4xx(
    client: TestClient, make_repository, make_build
) -> None:  # type: ignore[no-untyped-def]
    build = make_build(make_repository())
    log = f"/api/v1/builds/{build.id}/log"
    assert _error(client.get(log, params={"offset": BEYOND_BIGINT}))[0] == 422
    assert _error(client.get(log, params={"attempt": 2**31}))[0] == 422
    stream = client.get(f"{log}/stream", headers={"Last-Event-ID": f"1:{BEYOND_BIGINT}"})
    assert _error(stream) == (400, "invalid_last_event_id")
    stream = client.get(f"{log}/stream", headers={"Last-Event-ID": f"{2**31}:0"})
    assert _error(stream) == (400, "invalid_last_event_id")
    from app.api.pagination import encode_cursor

    for cursor in (encode_cursor(2**63), encode_cursor(-1)):
        assert _error(client.get("/api/v1/builds", params={"cursor": cursor})) == (
            400,
            "invalid_cursor",
        )
    missing = client.get("/api/v1/registries/default/missing", params={"cursor": BEYOND_BIGINT})
    assert _error(missing)[1] in ("invalid_cursor", "registry_not_found")


@pytest.mark.parametrize(
    "since",
    [
        "-2.92e-193",
        "1700000000",
        "0",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "1969-12-31T23:59:59Z",
        "yesterday",
    ],
)
def test_a_time_that_is_a_number_or_absurd_is_a_422(client: TestClient, since: str) -> None:
    response = client.get("/api/v1/builds", params={"since": since})
    assert _error(response) == (422, "validation_error")
    assert response.json()["error"]["details"]["errors"][0]["loc"] == ["query", "since"]


def test_iso_8601_times_are_accepted_with_or_without_an_offset(
    client: TestClient, make_repository, make_build
) -> None:  # type: ignore[no-untyped-def]
    build = make_build(make_repository())
    for since in ("2000-01-01", "2000-01-01T00:00:00", "2000-01-01T02:00:00+02:00"):
        page = client.get("/api/v1/builds", params={"since": since}).json()
        assert [item["id"] for item in page["items"]] == [build.id], since
    later = client.get("/api/v1/builds", params={"since": "9998-01-01T00:00:00Z"}).json()
    assert later["items"] == []


def test_each_code_is_declared_once_with_one_status() -> None:
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values))
    for code in ErrorCode:
        assert 400 <= code.status < 600
        assert code.meaning.endswith("."), code
    with pytest.raises(TypeError):
        NotFound("no such build", code=ErrorCode.INVALID_CURSOR)


def test_every_raise_site_uses_a_code_of_its_class_status() -> None:
    """Static: `NotFound(..., code=ErrorCode.X)` anywhere in app/ has X answered with 404."""
    classes = {
        name: cls.status_code
        for name, cls in vars(error_classes).items()
        if isinstance(cls, type) and issubclass(cls, ApiError)
    }
    seen = 0
    for path in Path(app_package.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in classes:
                continue
            for keyword in node.keywords:
                # A code passed on in a variable is checked by the constructor at run time.
                if keyword.arg == "code" and isinstance(keyword.value, ast.Attribute):
                    code = ErrorCode[keyword.value.attr]
                    assert code.status == classes[node.func.id], f"{path}:{node.lineno}"
                    seen += 1
    assert seen > 30


def test_every_operation_documents_its_errors_with_the_envelope(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    error_schema = document["components"]["schemas"]["Error"]
    assert error_schema["required"] == ["error"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                codes = response[CODES_KEY]
                assert codes, (method, path, status)
                assert all(ErrorCode(code).status == int(status) for code in codes)
                schema = response["content"]["application/json"]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}
                if status == "401":
                    assert "WWW-Authenticate" in response["headers"]
    retry = document["paths"]["/api/v1/builds/{build_id}/retry"]["post"]["responses"]
    assert set(retry) == {"200", "401", "403", "404", "409", "422", "503"}
    assert retry["409"][CODES_KEY] == ["invalid_transition"]


def test_the_documented_answers_check_catches_an_undocumented_status_and_code() -> None:
    router = APIRouter()

    @router.get("/things/{thing_id}", responses=errors(ErrorCode.BUILD_NOT_FOUND))
    def thing(thing_id: int) -> dict[str, int]:
        if thing_id == 1:
            raise NotFound("gone", code=ErrorCode.IMAGE_NOT_FOUND)
        if thing_id == 2:
            raise BadRequest("bad", code=ErrorCode.INVALID_CURSOR)
        if thing_id == 3:
            raise NotFound("gone", code=ErrorCode.BUILD_NOT_FOUND)
        return {"id": thing_id}

    small = FastAPI()
    small.include_router(router)
    install_error_handlers(small)
    document_errors(small)
    with TestClient(small) as client:
        answers = {n: client.get(f"/things/{n}") for n in (1, 2, 3, 4)}
        answers[5] = client.get("/things/x")
        unknown = client.get("/elsewhere")

    def problem(n: int) -> str | None:
        return check_answer(small, "GET", f"/things/{n}", answers[n])

    assert "code 'image_not_found'" in (problem(1) or "")
    assert "answered 400" in (problem(2) or "")
    assert problem(3) is None
    assert problem(4) is None
    assert check_answer(small, "GET", "/things/x", answers[5]) is None  # 422 is documented
    assert check_answer(small, "GET", "/elsewhere", unknown) is None  # no operation
    OBSERVED.undocumented.clear()  # the answers above were undocumented on purpose


def test_a_registry_address_that_does_not_parse_is_refused_and_not_stored(
    client: TestClient, auth: dict[str, str]
) -> None:
    for url in ("[:::]", "[1.2.3.4]:5000", "1.2.3.999", "a..b", "ftp://r", "-r", "r:0", "r:65536"):
        response = client.post("/api/v1/registries", json={"name": "r1", "url": url}, headers=auth)
        assert _error(response) == (400, "invalid_registry_url"), url
    assert client.get("/api/v1/registries").json()["items"] == []
    reserved = client.post(
        "/api/v1/registries", json={"name": "proxy-config", "url": "127.0.0.1:5000"}, headers=auth
    )
    assert _error(reserved) == (400, "invalid_registry_name")
    created = client.post(
        "/api/v1/registries", json={"name": "r1", "url": "HTTP://[::1]:05000/"}, headers=auth
    )
    assert created.json()["url"] == "http://[::1]:5000"


def test_the_proxy_config_leaves_out_a_stored_address_that_does_not_parse(
    client: TestClient, session: Session
) -> None:
    from app.models import Registry

    session.add_all(
        [
            Registry(name="broken", url="[:::]", healthy=True),
            Registry(name="good", url="127.0.0.1:5001", healthy=True),
        ]
    )
    session.commit()
    response = client.get("/api/v1/registries/proxy-config")
    assert response.status_code == 200, response.text
    assert "server 127.0.0.1:5001" in response.text
    assert "[:::]" not in response.text

    session.query(Registry).filter_by(name="good").delete()
    session.commit()
    assert _error(client.get("/api/v1/registries/proxy-config")) == (500, "proxy_config_invalid")


def test_a_replica_whose_scheme_differs_from_the_others_is_refused(
    client: TestClient, auth: dict[str, str]
) -> None:
    def add(name: str, url: str):  # type: ignore[no-untyped-def]
        return client.post("/api/v1/registries", json={"name": name, "url": url}, headers=auth)

    assert add("r1", "127.0.0.1:5001").status_code == 201  # loopback: http
    assert _error(add("r2", "10.0.0.5:5000")) == (409, "registry_scheme_mismatch")  # https
    assert add("r2", "http://10.0.0.5:5000").status_code == 201
    moved = client.patch("/api/v1/registries/r1", json={"url": "https://r1.internal"}, headers=auth)
    assert _error(moved) == (409, "registry_scheme_mismatch")
    names = [r["name"] for r in client.get("/api/v1/registries").json()["items"]]
    assert names == ["r1", "r2"]
    assert client.get("/api/v1/registries/proxy-config").status_code == 200


def test_a_value_the_database_refuses_is_a_422_and_stores_nothing(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = {"full_name": "octo/app", "base_image": "busybox\u0000"}
    assert _error(client.post("/api/v1/repos", json=body, headers=auth)) == (
        422,
        "validation_error",
    )
    assert _error(client.get("/api/v1/builds", params={"branch": "ma\u0000in"}))[0] == 422
    assert _error(client.get("/api/v1/repos/octo/ap%00p"))[0] == 422
    assert client.get("/api/v1/repos").json()["items"] == []
