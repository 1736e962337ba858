from __future__ import annotations

from fastapi.testclient import TestClient


def test_openapi_documents_the_repository_and_build_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/repos"]) == {"get", "post"}
    assert set(paths["/api/v1/repos/{owner}/{name}"]) == {"get", "patch"}
    for path in (
        "/api/v1/builds",
        "/api/v1/builds/{build_id}",
        "/api/v1/builds/{build_id}/log",
        "/api/v1/builds/{build_id}/log/stream",
        "/api/v1/repos/{owner}/{name}/branches/{branch}/latest-green",
        "/metrics",
    ):
        assert "get" in paths[path], path
    for action in ("retry", "cancel"):
        assert "post" in paths[f"/api/v1/builds/{{build_id}}/{action}"]
    create = paths["/api/v1/repos"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"]["$ref"].endswith("/RepositoryCreate")
