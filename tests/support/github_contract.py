"""GitHub's REST description of the reconciler's endpoints (`reconcile-and-checks-openapi.json`),
as request and response checks for the fake GitHub."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema

from tests.support.paths import SCHEMAS_DIR

CONTRACT_FILE = "reconcile-and-checks-openapi.json"


def from_openapi(node: Any) -> Any:
    """OpenAPI 3.0 to JSON Schema: `nullable: true` allows null, also under an enum (GitHub
    sends null there); `discriminator` without a mapping is dropped (see the file's caveats)."""
    if isinstance(node, list):
        return [from_openapi(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: from_openapi(value) for key, value in node.items() if key != "discriminator"}
    if converted.pop("nullable", False):
        if isinstance(converted.get("type"), str):
            converted["type"] = [converted["type"], "null"]
        if isinstance(converted.get("enum"), list) and None not in converted["enum"]:
            converted["enum"] = [*converted["enum"], None]
    return converted


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]

    def parameters(self, where: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.spec.get("parameters", []) if p["in"] == where}


class Contract:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.operations: list[Operation] = []
        for template, item in spec["paths"].items():
            regex = "^" + re.sub(r"\\{[^}]+\\}", "([^/]+)", re.escape(template)) + "$"
            for method, operation in item.items():
                self.operations.append(
                    Operation(method.upper(), template, re.compile(regex), operation)
                )

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for operation in self.operations:
            match = operation.pattern.match(path)
            if operation.method == method and match:
                names = re.findall(r"\{([^}]+)\}", operation.template)
                return operation, dict(zip(names, match.groups(), strict=True))
        return None

    def request_errors(
        self,
        operation: Operation,
        path_values: dict[str, str],
        query: dict[str, list[str]],
        body: Any,
    ) -> list[str]:
        errors: list[str] = []
        declared = operation.parameters("query")
        for name, values in query.items():
            if name not in declared:
                errors.append(f"query parameter {name!r} is not in the contract")
                continue
            for value in values:
                errors.extend(_parameter_errors(declared[name], value))
        for name, parameter in declared.items():
            if parameter.get("required") and name not in query:
                errors.append(f"query parameter {name!r} is required")
        for name, parameter in operation.parameters("path").items():
            errors.extend(_parameter_errors(parameter, path_values.get(name, "")))
        request_body = operation.spec.get("requestBody")
        if request_body is None:
            if body not in (None, b"", {}):
                errors.append("this operation takes no request body")
        else:
            schema = request_body["content"]["application/json"]["schema"]
            errors.extend(_schema_errors(schema, body))
        return errors

    def response_errors(self, operation: Operation, status: int, body: Any) -> list[str]:
        responses = operation.spec["responses"]
        response = responses.get(str(status))
        if response is None:
            return [f"{status} is not a documented answer of {operation.template}"]
        content = response.get("content", {}).get("application/json")
        if content is None:
            return [] if body is None else [f"a {status} of {operation.template} has no body"]
        return _schema_errors(content["schema"], body)


def _parameter_errors(parameter: dict[str, Any], raw: str) -> list[str]:
    schema = parameter.get("schema", {})
    value: Any = raw
    kind = schema.get("type")
    try:
        if kind == "integer":
            value = int(raw)
        elif kind == "boolean":
            if raw not in ("true", "false"):
                raise ValueError(raw)
            value = raw == "true"
    except ValueError:
        return [f"parameter {parameter['name']!r} is not a {kind}: {raw!r}"]
    return [f"parameter {parameter['name']!r}: {e}" for e in _schema_errors(schema, value)]


_validators: dict[int, tuple[dict[str, Any], jsonschema.protocols.Validator]] = {}


def _schema_errors(schema: dict[str, Any], value: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in _validator(schema).iter_errors(value)]


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    # Keyed by identity: the contract's schemas live as long as the process.
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        validator = jsonschema.Draft7Validator(
            from_openapi(schema), format_checker=jsonschema.FormatChecker()
        )
        cached = _validators[id(schema)] = (schema, validator)
    return cached[1]


@cache
def contract() -> Contract:
    return Contract(json.loads((SCHEMAS_DIR / CONTRACT_FILE).read_text()))
