"""Settings, read from `CARTRIDGE_*` environment variables (and `.env`)."""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.build_limits import Cpus, Disk, Memory, Pids, Swap

DEFAULT_STATE_DIR = Path("var")
INSECURE_SECRET_VALUES = frozenset({"", "change-me", "changeme", "secret", "development"})


class ConfigurationError(RuntimeError):
    """Settings that cannot run in the chosen environment."""


class DeclaredRegistry(BaseModel):
    """A registry replica declared in the settings rather than through the API."""

    name: str
    url: str
    required: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARTRIDGE_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    state_dir: Path = DEFAULT_STATE_DIR

    # Storage and queueing. The defaults need no other service: SQLite and a filesystem broker.
    database_url: str = ""
    broker_url: str = ""
    build_queue: str = "builds"
    default_queue: str = "cartridge"
    broker_connect_timeout_seconds: float = 1.0
    outbox_relay_interval_seconds: float = 5.0
    outbox_relay_grace_seconds: float = 2.0

    # Logs: "text" or "json" (one object per line); by default json in production, else text.
    log_format: Literal["text", "json"] | None = None

    # HTTP API.
    public_url: str = "http://127.0.0.1:8000"
    read_requires_token: bool = False
    # Signs the web pages' session and CSRF cookies. Every API process must share it; when unset
    # a random one is created in `state_dir` (fine for one host).
    session_secret: SecretStr | None = None
    session_days: int = 7
    default_page_size: int = 50
    max_page_size: int = 500

    # Fernet keys, comma-separated, that encrypt stored secrets (the first one encrypts). Outside
    # production a key is generated in $CARTRIDGE_STATE_DIR/secret.key when this is unset.
    secret_keys: SecretStr | None = None

    # GitHub webhooks.
    webhook_secret: SecretStr | None = None
    webhook_max_body_bytes: int = 25 * 1024 * 1024
    auto_register_owners: list[str] = Field(default_factory=list)

    # Build hosts.
    host_name: str = Field(default_factory=socket.gethostname)
    docker_host: str | None = None
    base_image: str = "cartridge/base:latest"
    # Debian's tini package ships it; copied into every image as pid 1 (workers/pipeline/launcher).
    tini_path: Path = Path("/usr/bin/tini-static")
    build_timeout_seconds: int = 1800
    git_token: SecretStr | None = None
    lease_seconds: int = 60
    heartbeat_seconds: float = 5.0
    max_lease_retries: int = 2
    lease_reaper_interval_seconds: float = 15.0
    # A queued build whose job is no longer in the broker (a Redis restart empties it) is sent
    # again once it has waited this long; the check runs every `redispatch_interval_seconds`.
    queued_job_timeout_seconds: float = 60.0
    redispatch_interval_seconds: float = 30.0
    worker_grace_seconds: int = 600
    # Limits of every container a build runs (README, "Security model"); a repository's own
    # `build_limits` override them. Sized for a modest build host running one build at a time.
    build_memory: Memory = 2 << 30
    build_swap: Swap = 0
    build_cpus: Cpus = 2.0
    build_pids: Pids = 1024
    build_disk: Disk = 10 << 30
    # How often a running build step's processes and disk use are measured.
    build_limit_poll_seconds: float = Field(default=1.0, gt=0)
    # The Docker network builds run on, created on demand ("none": no network at all), what it
    # may reach, and addresses it must not reach beyond the control plane's own.
    build_network: str = "cartridge-build"
    build_egress: Literal["internet", "none"] = "internet"
    build_deny: list[str] = Field(default_factory=list)
    build_firewall: Literal["iptables", "off"] = "iptables"
    # Build logs are committed in batches: whichever comes first.
    build_log_flush_seconds: float = 0.5
    build_log_flush_bytes: int = 16 * 1024
    # A build's log stores at most this much; past it the build runs on and the last
    # build_log_tail_bytes of the output are kept, after a line saying how much was dropped.
    build_log_max_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    build_log_tail_bytes: int = Field(default=1024 * 1024, ge=0)

    # Retention (app/retention/service.py): how long rows are kept; 0 keeps them forever.
    row_retention_interval_seconds: float = 3600.0
    row_retention_batch_size: int = Field(default=500, ge=1, le=10_000)
    row_retention_deliveries_days: float = Field(default=30, ge=0)
    row_retention_outbox_hours: float = Field(default=24, ge=0)
    row_retention_status_posts_days: float = Field(default=30, ge=0)
    row_retention_log_days: float = Field(default=90, ge=0)
    row_retention_logs_per_branch: int = Field(default=50, ge=0)

    # Registries and the pull-through caching proxy.
    registry_url: str = "127.0.0.1:5000"
    # Where the build host's Docker engine pushes, when it reaches that registry by another address
    # than the worker process does (a worker in a container driving the host's engine).
    registry_push_url: str | None = None
    # Replicas registered at start-up, as JSON: [{"name": "r1", "url": "10.0.0.5:5000"}, ...],
    # inline or in a file; the API cannot change or remove them.
    registries: list[DeclaredRegistry] = Field(default_factory=list)
    registries_file: Path | None = None
    # None: every required replica must hold the image; N: at least N of them.
    replica_quorum: int | None = Field(default=None, ge=1)
    # A build whose image misses the quorum waits this long for repairs before it is errored.
    replica_quorum_wait_seconds: float = Field(default=900.0, ge=0)
    replication_concurrency: int = Field(default=8, ge=1)
    replication_attempts: int = Field(default=2, ge=1)
    registry_connect_timeout_seconds: float = 5.0
    registry_timeout_seconds: float = 60.0
    registry_health_interval_seconds: float = 30.0
    repair_batch_size: int = Field(default=20, ge=1)
    repair_lease_seconds: int = 900
    proxy_host: str = "127.0.0.1:5080"
    # The address nginx listens on, when deploy hosts reach the proxy by another one (a proxy in a
    # container with a published port listens on 0.0.0.0).
    proxy_listen: str | None = None
    proxy_cache_path: Path = Path("/var/cache/cartridge-proxy")
    proxy_cache_max_size: str = "20g"
    proxy_cache_inactive: str = "30d"
    proxy_tag_cache_seconds: int = 10
    # Where the proxy's nginx keeps its pid file, temporary files and access log.
    proxy_runtime_dir: Path = Path("/var/lib/cartridge-proxy")
    proxy_worker_processes: str = "auto"
    # The user nginx's worker processes run as when its master runs as root (nginx's own default,
    # usually `nobody`, when unset); `cartridge proxy serve` gives it the cache directory.
    proxy_worker_user: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    # Image retention (see app/retention/policy.py): what the periodic prune keeps.
    retention_enabled: bool = True
    retention_interval_seconds: float = 3600.0
    retention_keep_last: int = Field(default=10, ge=1)
    retention_keep_days: int = Field(default=30, ge=0)
    retention_keep_pulled_days: int = Field(default=7, ge=0)
    retention_deleted_branch_days: int = Field(default=14, ge=0)
    # Images one prune run deletes at the most; the next run continues.
    retention_batch_size: int = Field(default=200, ge=1)
    image_delete_max_tries: int = 8
    # `cartridge proxy serve` re-renders the config this often and reloads nginx when it changed.
    proxy_refresh_seconds: float = 5.0
    nginx_binary: str = "nginx"
    # Registry authentication (app/registry_auth): `none` leaves the replicas open; `token` makes
    # Cartridge the token issuer of Distribution's token auth, and the replicas' configs name it.
    registry_auth: Literal["none", "token"] = "none"
    # The ES256 key that signs registry tokens and its certificate (the replicas' rootcertbundle).
    # Unset: generated once into $CARTRIDGE_STATE_DIR/registry-auth/ (development only).
    registry_auth_key_file: Path | None = None
    registry_auth_certificate_file: Path | None = None
    # `service` and `issuer` the replicas expect; the realm defaults to public_url + /auth/token.
    registry_auth_service: str = "cartridge-registry"
    registry_auth_issuer: str = "cartridge"
    registry_auth_realm: str | None = None
    registry_auth_token_seconds: int = Field(default=300, ge=30, le=3600)
    # Pulls without credentials (a token with pull on any repository for anyone who asks).
    registry_auth_anonymous_pull: bool = False
    # With registry auth on, the pull proxy asks Cartridge about every request (nginx
    # `auth_request` to this base URL, default public_url) and keeps a yes this long per
    # credential and repository: a revoked token may pull for up to that long.
    proxy_auth_url: str | None = None
    proxy_auth_cache_seconds: int = Field(default=30, ge=0, le=600)

    # GitHub commit statuses.
    github_api_url: str = "https://api.github.com"
    github_token: SecretStr | None = None
    github_app_id: str | None = None
    github_app_installation_id: str | None = None
    github_app_private_key: SecretStr | None = None
    github_app_private_key_path: Path | None = None
    github_status_context: str = "cartridge/build"
    github_timeout_seconds: float = 10.0
    # An installation token is replaced this long before GitHub says it expires.
    github_app_token_refresh_seconds: float = 300.0
    # Retries of 5xx answers and timeouts: exponential from the base, capped, with jitter.
    github_status_retry_base_seconds: float = 5.0
    github_status_retry_max_seconds: float = 900.0
    github_status_max_tries: int = 15
    # How often the periodic job re-sends statuses whose retry is due (or whose message was lost).
    github_status_redrive_seconds: float = 60.0

    # The reconciler: how often it compares every repository's branch heads with GitHub's.
    reconcile_interval_seconds: float = Field(default=300.0, gt=0)
    # Each pass starts up to this much later than its schedule, so installations sharing a
    # GitHub App do not all ask at once.
    reconcile_jitter_seconds: float = Field(default=30.0, ge=0)
    # A pass stops while fewer requests than this remain in the credential's hourly budget,
    # leaving them to commit statuses.
    reconcile_rate_limit_reserve: int = Field(default=500, ge=0)
    # A pass that has not finished after this long is taken as dead (its worker was lost).
    reconcile_run_lease_seconds: float = 1800.0
    # As a GitHub App: redeliver failed hook deliveries of this many days back (GitHub keeps 3).
    reconcile_deliveries_days: float = Field(default=3.0, gt=0, le=7)
    reconcile_max_redelivery_requests: int = Field(default=3, ge=1)
    # GitHub asks integrations to wait a second between mutating requests.
    github_mutation_interval_seconds: float = Field(default=1.0, ge=0)

    @field_validator("build_network")
    @classmethod
    def _build_network_is_isolated(cls, name: str) -> str:
        # "host" would run builds in the host's network namespace; "bridge" is every
        # container's default network, shared with whatever else runs on the host.
        if name in ("host", "bridge", "default") or not name.strip():
            raise ValueError(
                f"{name!r} cannot be the build network: name a network of Cartridge's own "
                "(default cartridge-build), or set CARTRIDGE_BUILD_EGRESS=none"
            )
        return name

    @property
    def github_app_configured(self) -> bool:
        has_key = self.github_app_private_key is not None or self.github_app_private_key_path
        return bool(self.github_app_id and self.github_app_installation_id and has_key)

    @property
    def github_statuses_enabled(self) -> bool:
        """Commit statuses are recorded only when there are credentials to send them with."""
        return self.github_token is not None or self.github_app_configured

    @property
    def engine_registry_url(self) -> str:
        """The registry address the build host's Docker engine pushes to."""
        return self.registry_push_url or self.registry_url

    @property
    def registry_auth_enabled(self) -> bool:
        return self.registry_auth == "token"

    @property
    def registry_auth_realm_url(self) -> str:
        return self.registry_auth_realm or f"{self.public_url.rstrip('/')}/auth/token"

    @property
    def registry_auth_dir(self) -> Path:
        return self.state_dir / "registry-auth"

    @property
    def proxy_config_path(self) -> Path:
        """Where `cartridge proxy serve` keeps the config nginx runs."""
        return self.proxy_runtime_dir / "nginx.conf"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'cartridge.db'}"

    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def workspace_dir(self) -> Path:
        return self.state_dir / "workspaces"

    @property
    def launcher_cache_dir(self) -> Path:
        """Where the launcher's shim is compiled once per build host."""
        return self.state_dir / "launcher"

    @property
    def broker_folder(self) -> Path:
        return self.state_dir / "broker"

    def production_problems(self) -> list[str]:
        """What makes these settings unfit for production, in words an operator can act on."""
        problems: list[str] = []
        if not self.database_url:
            problems.append("CARTRIDGE_DATABASE_URL is not set (SQLite is for a single node)")
        if not self.broker_url:
            problems.append(
                "CARTRIDGE_BROKER_URL is not set (the filesystem broker is one host only)"
            )
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        if secret.strip().lower() in INSECURE_SECRET_VALUES:
            problems.append("CARTRIDGE_WEBHOOK_SECRET is missing or still a default value")
        elif len(secret) < 16:
            problems.append("CARTRIDGE_WEBHOOK_SECRET is shorter than 16 characters")
        if self.secret_keys is None or not self.secret_keys.get_secret_value().strip():
            problems.append(
                "CARTRIDGE_SECRET_KEYS is not set (stored secrets are encrypted with it; "
                "make one with `cartridge secrets generate-key`)"
            )
        if self.public_url.startswith("http://127.0.0.1") or "localhost" in self.public_url:
            problems.append("CARTRIDGE_PUBLIC_URL still points at this machine's loopback address")
        if self.registry_auth_enabled and not (
            self.registry_auth_key_file and self.registry_auth_certificate_file
        ):
            problems.append(
                "CARTRIDGE_REGISTRY_AUTH=token needs CARTRIDGE_REGISTRY_AUTH_KEY_FILE and "
                "CARTRIDGE_REGISTRY_AUTH_CERTIFICATE_FILE (every API and worker process signs "
                "with the same key)"
            )
        return problems

    def security_warnings(self) -> list[str]:
        """Allowed but worth an operator's attention: logged at start-up, shown on /readyz."""
        warnings: list[str] = []
        if self.environment == "production" and not self.read_requires_token:
            warnings.append(
                "CARTRIDGE_READ_REQUIRES_TOKEN is false: anyone who reaches the API can read "
                "builds, logs, images and repositories without a token"
            )
        return warnings

    def check(self) -> None:
        if self.environment == "production":
            problems = self.production_problems()
            if problems:
                raise ConfigurationError(
                    "Refusing to start in production:\n  - " + "\n  - ".join(problems)
                )


@lru_cache
def get_settings() -> Settings:
    return Settings()
