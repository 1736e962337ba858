"""Registry replicas: configuration, health, what each lacks, and the pull proxy's config."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse

from app.api.deps import AdminToken, DbSession, ReadAccess, WriteToken
from app.api.pagination import decode_cursor, page_of
from app.models import Registry
from app.registries import queries, service
from app.registries.proxy import proxy_config
from app.registries.schemas import (
    MissingImage,
    MissingImagePage,
    ProxyHostList,
    ProxyHostOut,
    RegistryCreate,
    RegistryList,
    RegistryOut,
    RegistryUpdate,
)

router = APIRouter(prefix="/registries", tags=["registries"])
proxies_router = APIRouter(prefix="/proxies", tags=["registries"])


def _out(registry: Registry, missing: int) -> RegistryOut:
    return RegistryOut.model_validate(registry).model_copy(update={"missing_images": missing})


@router.get("")
def list_registries(session: DbSession, _access: ReadAccess) -> RegistryList:
    """Every replica with its recorded health and how many images it lacks."""
    counts = queries.missing_counts(session)
    registries = queries.list_registries(session)
    return RegistryList(items=[_out(r, counts.get(r.id, 0)) for r in registries])


@router.post("/check")
def check_registries(session: DbSession, _token: WriteToken) -> RegistryList:
    """Probes every replica now (`GET /v2/`), records the result, and lists the replicas as
    `GET /registries` does; the periodic health check does the same every
    `CARTRIDGE_REGISTRY_HEALTH_INTERVAL_SECONDS`."""
    service.check_health(session)
    return list_registries(session, _token)


@router.get(
    "/proxy-config",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
def get_proxy_config(session: DbSession, _access: ReadAccess) -> PlainTextResponse:
    """The nginx config of the caching pull proxy for the current replicas, checked by
    `nginx -t` (500 `proxy_config_invalid` when nginx refuses it, 503 `nginx_unavailable` when
    it cannot run)."""
    return PlainTextResponse(proxy_config(session))


@router.post("", status_code=201)
def create_registry(body: RegistryCreate, session: DbSession, _token: AdminToken) -> RegistryOut:
    registry = service.create_registry(session, body.name, body.url, required=body.required)
    return _out(registry, queries.missing_counts(session).get(registry.id, 0))


@router.get("/{name}")
def get_registry(name: str, session: DbSession, _access: ReadAccess) -> RegistryOut:
    registry = service.get_registry(session, name)
    return _out(registry, queries.missing_counts(session).get(registry.id, 0))


@router.patch("/{name}")
def update_registry(
    name: str, body: RegistryUpdate, session: DbSession, _token: AdminToken
) -> RegistryOut:
    registry = service.update_registry(session, name, url=body.url, required=body.required)
    return _out(registry, queries.missing_counts(session).get(registry.id, 0))


@router.delete("/{name}", status_code=204)
def delete_registry(name: str, session: DbSession, _token: AdminToken) -> Response:
    service.delete_registry(session, name)
    return Response(status_code=204)


@router.get("/{name}/missing")
def missing_images(
    name: str,
    session: DbSession,
    _access: ReadAccess,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> MissingImagePage:
    """Images the replica lacks (not verified present there), newest first."""
    registry = service.get_registry(session, name)
    before_id = int(decode_cursor(cursor, int)) if cursor else None
    rows = queries.missing_images(session, registry.id, limit=limit + 1, before_id=before_id)
    items = [
        MissingImage(
            image_id=image.id,
            name=image.name,
            tag=image.tag,
            manifest_digest=image.manifest_digest,
            state=row.state if row else "unknown",
            last_error=row.last_error if row else None,
            last_attempt_at=row.updated_at if row else None,
        )
        for image, row in rows
    ]
    page = page_of(items, limit, key=lambda item: item.image_id)
    return MissingImagePage(items=page.items, next_cursor=page.next_cursor)


@proxies_router.get("")
def list_proxy_hosts(session: DbSession, _access: ReadAccess) -> ProxyHostList:
    """Every host running the pull proxy (`cartridge proxy serve`): the config it runs, how often
    it was reloaded, and the error that kept a newer config from loading, if any."""
    hosts = queries.proxy_hosts(session)
    return ProxyHostList(items=[ProxyHostOut.model_validate(host) for host in hosts])
