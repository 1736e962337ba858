"""Request and response bodies for repositories. The webhook secret goes in, never out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from app.build_limits import Cpus, Disk, Memory, Pids, Swap
from app.models import Repository, RepositoryReconciliation
from app.reconcile.schemas import LastReconciliation

# GitHub: owners are alphanumerics and single hyphens (<= 39), names alphanumerics, '.', '-', '_'.
FULL_NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"
# A Docker repository path: lowercase components separated by '.', '_', '__' or dashes.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_NAME_PATTERN = rf"^{_COMPONENT}(?:/{_COMPONENT})*$"
CLONE_URL_PATTERN = r"^(?:(?:https?|ssh|git|file)://\S+|[\w.-]+@[\w.-]+:\S+)$"
_BAD_REF_CHARACTERS = re.compile(r"[\s~^:?*\[\\\x00-\x1f\x7f]")


def _check_branch(name: str) -> str:
    """What `git check-ref-format` refuses in a branch name."""
    if (
        _BAD_REF_CHARACTERS.search(name)
        or ".." in name
        or "//" in name
        or "@{" in name
        or name.startswith(("/", "-", "."))
        or name.endswith(("/", ".", ".lock"))
    ):
        raise ValueError(f"{name!r} is not a valid branch name")
    return name


FullName = Annotated[str, Field(pattern=FULL_NAME_PATTERN, examples=["octo/app"])]
ImageName = Annotated[str, Field(max_length=255, pattern=IMAGE_NAME_PATTERN)]
CloneUrl = Annotated[str, Field(max_length=2000, pattern=CLONE_URL_PATTERN)]
BranchName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_check_branch)]
BranchPattern = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^\S+$")]
BaseImage = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^\S+$")]
WebhookSecret = Annotated[SecretStr, Field(min_length=1, max_length=255)]


def default_image_name(full_name: str) -> str:
    """The image name a repository gets unless one is chosen: `Octo/My_App.` -> `octo-my_app`."""
    lowered = full_name.lower().replace("/", "-")
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", lowered)
    # Separators may only sit between alphanumerics, one at a time.
    cleaned = re.sub(r"[._-]{2,}", "-", cleaned).strip("._-")
    return cleaned or "repository"


class BuildLimits(BaseModel):
    """Limits of every container a build of the repository runs. A null (or missing) key takes
    the installation's setting (`CARTRIDGE_BUILD_MEMORY`, `_SWAP`, `_CPUS`, `_PIDS`, `_DISK`)."""

    model_config = ConfigDict(extra="forbid")

    memory: Memory | None = Field(default=None, description="bytes of memory")
    swap: Swap | None = Field(default=None, description="bytes of swap beyond the memory")
    cpus: Cpus | None = Field(default=None, description="CPU time, in CPUs (e.g. 1.5)")
    pids: Pids | None = Field(default=None, description="processes and threads at once")
    disk: Disk | None = Field(default=None, description="bytes each build step may write")

    def stored(self) -> dict[str, int | float] | None:
        values = {key: value for key, value in self.model_dump().items() if value is not None}
        return values or None

    def merged_into(self, current: dict[str, int | float] | None) -> dict[str, int | float] | None:
        """`current` with the keys given here changed (a given null removes the key)."""
        values = dict(current or {})
        for key in self.model_fields_set:
            value = getattr(self, key)
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        return values or None


class RepositoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: FullName
    clone_url: CloneUrl | None = Field(
        default=None, description="Defaults to https://github.com/<full_name>.git"
    )
    default_branch: BranchName = "main"
    image_name: ImageName | None = Field(
        default=None, description="Defaults to the full name, lowercased, '/' as '-'"
    )
    webhook_secret: WebhookSecret | None = Field(
        default=None, description="Write-only; the global secret applies when unset"
    )
    branch_filters: list[BranchPattern] = Field(
        default_factory=list, max_length=100, description="fnmatch patterns; empty builds all"
    )
    build_tags: bool = False
    base_image: BaseImage | None = None
    cancel_superseded: bool = True
    protected_branches: list[BranchPattern] | None = Field(
        default=None, max_length=100, description="null protects the default branch only"
    )
    build_limits: BuildLimits | None = Field(
        default=None, description="the repository's own build limits; null: the installation's"
    )


_NOT_NULLABLE = (
    "clone_url",
    "default_branch",
    "image_name",
    "branch_filters",
    "build_tags",
    "cancel_superseded",
)


class RepositoryUpdate(BaseModel):
    """Only the fields present change; `null` clears the nullable ones."""

    model_config = ConfigDict(extra="forbid")

    clone_url: CloneUrl | None = None
    default_branch: BranchName | None = None
    image_name: ImageName | None = None
    webhook_secret: WebhookSecret | None = None
    branch_filters: list[BranchPattern] | None = Field(default=None, max_length=100)
    build_tags: bool | None = None
    base_image: BaseImage | None = None
    cancel_superseded: bool | None = None
    protected_branches: list[BranchPattern] | None = Field(default=None, max_length=100)
    build_limits: BuildLimits | None = Field(
        default=None,
        description="changes only the keys given (null removes one); null removes them all",
    )

    @model_validator(mode="after")
    def _required_fields_are_not_cleared(self) -> RepositoryUpdate:
        given = self.model_fields_set
        cleared = [f for f in _NOT_NULLABLE if f in given and getattr(self, f) is None]
        if cleared:
            raise ValueError(f"these fields cannot be null: {', '.join(cleared)}")
        return self

    def changes(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field in self.model_fields_set:
            value = getattr(self, field)
            values[field] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return values


class RepositoryOut(BaseModel):
    id: int
    full_name: str
    owner: str
    name: str
    clone_url: str
    default_branch: str
    image_name: str
    has_webhook_secret: bool
    branch_filters: list[str]
    build_tags: bool
    base_image: str | None
    cancel_superseded: bool
    protected_branches: list[str] | None
    effective_protected_branches: list[str]
    last_reconciliation: LastReconciliation | None = Field(
        default=None, description="The reconciler's last comparison with GitHub's branch heads"
    )
    build_limits: BuildLimits
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(
        cls, repository: Repository, reconciliation: RepositoryReconciliation | None = None
    ) -> RepositoryOut:
        return cls(
            id=repository.id,
            full_name=repository.full_name,
            owner=repository.owner,
            name=repository.name,
            clone_url=repository.clone_url,
            default_branch=repository.default_branch,
            image_name=repository.image_name,
            has_webhook_secret=bool(repository.webhook_secret),
            branch_filters=list(repository.branch_filters),
            build_tags=repository.build_tags,
            base_image=repository.base_image,
            cancel_superseded=repository.cancel_superseded,
            protected_branches=repository.protected_branches,
            effective_protected_branches=repository.effective_protected_branches(),
            last_reconciliation=LastReconciliation.of(reconciliation),
            build_limits=BuildLimits.model_validate(repository.build_limits or {}),
            created_at=repository.created_at,
            updated_at=repository.updated_at,
        )
