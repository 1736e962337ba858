"""The image as the API shows it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Layer(BaseModel):
    digest: str
    size: int
    media_type: str


class ReplicaPresence(BaseModel):
    registry: str
    required: bool
    present: bool = Field(description="Verified present on this replica, by digest.")
    verified_at: datetime | None


class ImageOut(BaseModel):
    id: int
    build_id: int
    build_status: str = Field(description="Only a `succeeded` build's image is green.")
    attempt: int
    source_repository: str = Field(description="The GitHub repository (owner/name).")
    sha: str = Field(description="The commit the image was built from.")
    name: str = Field(description="The image's name in the registries.")
    tag: str = Field(description="The full commit SHA.")
    digest: str = Field(description="The manifest digest the registry confirmed.")
    reference: str = Field(description="How deploy hosts pull it: by digest, through the proxy.")
    config_digest: str
    media_type: str
    size: int = Field(description="Compressed bytes to pull: the config and every layer.")
    layers: list[Layer]
    roles: dict[str, str] = Field(description="container/roles.json: role name -> command.")
    labels: dict[str, str]
    replicas: list[ReplicaPresence]
    pinned: bool = Field(description="Retention always keeps a pinned image.")
    last_pulled_at: datetime | None = Field(description="The last pull through the proxy.")
    created_at: datetime
