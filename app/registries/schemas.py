"""Request and response bodies of the registries API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class RegistryCreate(BaseModel):
    name: str = Field(examples=["replica-1"])
    url: str = Field(
        description="host:port as Docker names the registry", examples=["10.0.0.5:5000"]
    )
    required: bool = Field(default=True, description="whether builds wait for this replica")


class RegistryUpdate(BaseModel):
    url: str | None = None
    required: bool | None = None


class RegistryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    url: str
    required: bool
    healthy: bool
    last_checked_at: datetime | None
    last_error: str | None
    missing_images: int = 0
    created_at: datetime


class RegistryList(BaseModel):
    items: list[RegistryOut]


class MissingImage(BaseModel):
    image_id: int
    name: str
    tag: str
    manifest_digest: str
    # "missing" when a copy or verification failed, "unknown" when it was never attempted.
    state: str
    last_error: str | None
    last_attempt_at: datetime | None


class MissingImagePage(BaseModel):
    items: list[MissingImage]
    next_cursor: str | None


class ProxyHostOut(BaseModel):
    """A host running the pull proxy, the config it runs and why a newer one was refused."""

    model_config = ConfigDict(from_attributes=True)

    host_name: str
    listen: str
    config_sha256: str | None
    applied_at: datetime | None
    reloads: int
    checked_at: datetime
    last_error: str | None


class ProxyHostList(BaseModel):
    items: list[ProxyHostOut]
