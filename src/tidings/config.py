"""Settings: the one typed configuration object, read from TIDINGS_* variables and a .env file.

Only this module and the CLI read the environment. Bad values fail at start-up with a message that names the
variable (see `load_settings`).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import ConfigError

ENV_PREFIX = "TIDINGS_"


class Environment(StrEnum):
    development = "development"
    production = "production"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]
EventType = Annotated[
    str, StringConstraints(max_length=128, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
]


class DebounceDefault(BaseModel):
    """An event type's debounce windows in seconds (0 or unset = off); events may override them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: float = Field(0, ge=0, le=86_400)
    push: float = Field(0, ge=0, le=86_400)
    max_wait: float | None = Field(None, ge=0, le=86_400)


# Any of these given (and TIDINGS_ENV not set) selects production mode.
SECRET_FIELDS = ("jwt_secret", "jwt_public_key_path", "jwks_url", "publish_key")


class Settings(BaseSettings):
    """Everything tidings can be told. Field `foo_bar` is variable `TIDINGS_FOO_BAR`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    # --- process -------------------------------------------------------------------------------------------
    env: Environment = (
        Environment.development
    )  # default: production as soon as a real secret is given (below)
    data_dir: Path = Path(".tidings")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "text"] = "auto"
    public_url: str = ""  # how clients reach this server; used in printed examples only
    # OpenTelemetry's own standard variables (no TIDINGS_ prefix): set one and metrics are also pushed over OTLP
    otel_endpoint: str = Field(
        "",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    )

    # --- bus and history -----------------------------------------------------------------------------------
    bus_url: str = "memory://"
    redis_prefix: str = "tidings"
    history_max_events: int = Field(1000, ge=0)
    history_max_age_seconds: float = Field(600, ge=0)

    # --- auth ----------------------------------------------------------------------------------------------
    jwt_secret: str = ""
    jwt_public_key_path: Path | None = None
    jwks_url: str = ""
    jwt_algorithms: CsvList = Field(default_factory=list)  # default: chosen from the key kind
    jwt_audience: str = ""
    jwt_issuer: str = ""
    jwt_leeway_seconds: float = Field(30, ge=0)
    roles_claim: str = "roles"
    token_cookie: str = ""
    publish_key: str = ""

    # --- access and exposure (README: Production checklist) ----------------------------------------------------
    # Topic reads and device topic subscriptions are closed unless the token's claim grants them (exact names,
    # `prefix.*` patterns, or `*`), or this opens every topic to every authenticated user.
    topics_open: bool = False
    topics_claim: str = "topics"  # dotted paths reach nested claims, like roles_claim
    # A token valid for longer than this from now is refused, so a revocation need only be remembered this long.
    jwt_max_lifetime_seconds: float = Field(86_400, gt=0, le=366 * 86_400)
    # A stream is refused (401) a token that expires sooner than this: EventSource stops and the client refreshes,
    # instead of a stream opened only to be closed at once (and reopened, in a loop).
    stream_min_token_seconds: float = Field(5, ge=0)
    docs_enabled: bool | None = None  # /docs and /openapi.json; default: on in development, off in production
    metrics_token: str = ""  # when set, GET /metrics needs `Authorization: Bearer <token>`

    # --- browser clients, CORS and the dashboard (README "Browser") ------------------------------------------
    # Exact origins (scheme://host[:port]) that may call the stream, device, ticket and push-key routes from
    # another origin, with credentials. Others get no CORS headers at all (the browser blocks them); never `*`.
    cors_origins: CsvList = Field(default_factory=list)
    # A stream ticket (POST /v1/stream-tickets, for `?ticket=`) is valid once, within this many seconds.
    stream_ticket_seconds: float = Field(60, gt=0, le=600)
    dashboard: bool = True  # /dashboard; inert without an admin token (every data route checks it)
    dashboard_stats_seconds: float = Field(2, gt=0, le=3600)  # the admin feed's `stats` frame period

    # --- events --------------------------------------------------------------------------------------------
    max_data_bytes: int = Field(4096, ge=64)
    max_batch: int = Field(100, ge=1)
    max_audience: int = Field(1000, ge=1)

    # --- streams -------------------------------------------------------------------------------------------
    keepalive_seconds: float = Field(30, gt=0)
    reconnect_delay_ms: int = Field(3000, ge=0)
    admin_max_connections_per_user: int = Field(1, ge=0)  # on /v1/admin/events
    stream_buffer_events: int = Field(1000, ge=1)
    stream_idle_timeout: float = Field(3600, ge=0)  # 0 = never
    stream_max_lifetime: float = Field(0, ge=0)  # 0 = unlimited
    shutdown_grace_seconds: float = Field(10, ge=0)

    # --- memory budget of streams (README "Budgets") ---------------------------------------------------------
    # Per user on /v1/events; beyond it the oldest is closed (0 = unlimited). Browsers open at most 6 HTTP/1.1
    # connections per origin and tidings.js `shared: true` holds one per browser, so 16 covers several browsers
    # and devices with unshared tabs, while one token can hold at most 16 streams' buffers.
    max_connections_per_user: int = Field(16, ge=0)
    # What one stream may hold before it is cut as slow (it resumes from history). 512 KiB is above the largest
    # single publish to one user (TIDINGS_MAX_BATCH x TIDINGS_MAX_DATA_BYTES, ~430 KB with the defaults), so a
    # client that reads is never cut by one burst; half the former 1 MiB.
    stream_buffer_bytes: int = Field(512 * 1024, ge=1024)
    # What all streams of the process may hold together; beyond it the furthest-behind are cut first.
    # 0 = automatic: 1/32 of the memory the process may use (cgroup limit or physical RAM), within 16-128 MiB
    # (measured: RSS grows by up to ~2.5x the bytes held, the allocator's overhead on many small buffers).
    stream_buffer_total_bytes: int = Field(0, ge=0)
    # SO_SNDBUF of each stream socket under `tidings serve` (0 = the kernel's autotuning, which let a client that
    # stopped reading hold 0.5-1.5 MB of kernel memory on loopback). Linux doubles it for its own bookkeeping.
    stream_send_buffer_bytes: int = Field(64 * 1024, ge=0)

    # --- hostile clients (tidings serve; README "Budgets") ----------------------------------------------------
    # Seconds from the connect (or a kept-alive connection's next request) to the last request header.
    server_header_timeout: float = Field(10, gt=0)
    server_max_header_bytes: int = Field(64 * 1024, ge=1024)  # request line + headers; beyond: 431
    # Connections still sending headers; beyond it the oldest (sending for more than a second) is closed.
    server_max_pending_headers: int = Field(256, ge=1)
    # File descriptors kept free: within this margin of the open-files limit new requests get 503 + Retry-After.
    server_fd_reserve: int = Field(64, ge=8)

    # --- storage -------------------------------------------------------------------------------------------
    database_url: str = ""  # default: sqlite+aiosqlite:///<data_dir>/tidings.db
    device_ttl_days: int = Field(90, ge=1)
    device_register_rate_per_minute: int = Field(30, ge=0)
    delivery_log_retention_days: int = Field(7, ge=1)

    # --- inbox ---------------------------------------------------------------------------------------------
    # Items older than this are deleted by the pruner (role, topic and broadcast items leave only this way).
    inbox_retention_days: int = Field(90, ge=1)
    # A user's inbox is their newest N items (direct + role/topic/broadcast); lists and counts never look
    # further, so their cost is bounded by N; direct items beyond it are pruned.
    inbox_max_items_per_user: int = Field(1000, ge=1, le=100_000)
    # Ids one mark request (seen/read/archive) may name; more is refused (use `all`).
    inbox_max_ids_per_request: int = Field(500, ge=1, le=10_000)

    # --- push ----------------------------------------------------------------------------------------------
    worker_in_process: bool | None = None  # default: True with the memory bus, False with Redis
    worker_concurrency: int = Field(64, ge=1)
    push_max_attempts: int = Field(5, ge=1)
    push_visibility_timeout: float = Field(60, gt=0)
    apns_key_path: Path | None = None
    apns_key: str = ""
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_topic: str = ""
    apns_url: str = ""  # override both hosts (sandbox)
    fcm_credentials_path: Path | None = None
    fcm_credentials: str = ""
    fcm_project_id: str = ""
    fcm_url: str = ""
    fcm_token_url: str = ""
    vapid_private_key_path: Path | None = None
    vapid_subject: str = ""
    webpush_allowed_hosts: CsvList = Field(default_factory=list)  # empty = any https host
    webpush_http_hosts: CsvList = Field(default_factory=list)  # hosts allowed over plain http (dev)

    # --- policy: preferences, quiet hours, held pushes (tidings.policy) -----------------------------------
    # Scopes one user may configure (mute/push/stream per event type, topic or app key such as
    # conversation:42). Bounds a user's preference document (~100 bytes a scope); at most MAX_SCOPES (256).
    preferences_max_scopes: int = Field(256, ge=1, le=256)
    # Held pushes (quiet hours, mode `hold`): how often a worker looks for released ones, how many it takes
    # per look, and how long a claim is its own before another worker may take the row (at-least-once).
    held_poll_seconds: float = Field(5, gt=0)
    held_claim_batch: int = Field(100, ge=1, le=10_000)
    held_claim_lease_seconds: float = Field(60, gt=0)

    # --- policy: presence and debounce windows (policy/presence*.py, policy/debounce*.py) -------------------
    # A process that has not heartbeated for presence_ttl_seconds stops counting (a SIGKILLed one too);
    # every process sharing a Redis must use the same ttl. Local changes are written after sync_delay.
    presence_ttl_seconds: float = Field(10, gt=0)
    presence_heartbeat_seconds: float = Field(3, gt=0)
    presence_sync_delay_seconds: float = Field(0.1, ge=0)
    presence_last_seen_days: float = Field(30, gt=0)  # how long "last seen" is remembered after a user left
    # Merged windows keep at most this many items per list in `data` (the newest) and event ids (the newest;
    # the count stays exact). The flusher looks for windows due to close every poll period; a trailing
    # delivery handed to a process that died before finishing it is handed out again after the lease.
    debounce_max_list_items: int = Field(100, ge=1)
    debounce_max_ids: int = Field(100, ge=1)
    debounce_poll_seconds: float = Field(0.1, gt=0)
    debounce_lease_seconds: float = Field(30, gt=0)

    # --- policy: debounce defaults per event type (off unless listed; events override per event) ----------
    # JSON: {"tasks.changed": {"stream": 1, "push": 60}}. Stream windows are keyed by (audience, scope) before
    # the bus, push windows by (user, scope) in the worker. `Hub(debounce=...)` adds to (and wins over) these.
    debounce: dict[EventType, DebounceDefault] = Field(default_factory=dict)

    @field_validator(
        "jwt_algorithms", "webpush_allowed_hosts", "webpush_http_hosts", "cors_origins", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, value: list[str]) -> list[str]:
        return [_origin(item) for item in value]

    @field_validator("bus_url")
    @classmethod
    def _bus_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise ValueError("must start with memory:// or redis:// (or rediss://)")
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _no_none_alg(cls, value: list[str]) -> list[str]:
        allowed = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA"}
        bad = [alg for alg in value if alg not in allowed]
        if bad:
            raise ValueError(f"unsupported algorithm(s) {bad}; choose from {sorted(allowed)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _production_when_secrets_are_given(cls, data: object) -> object:
        # Real secrets mean a real deployment: it must not get development's conveniences by default.
        if isinstance(data, dict) and data.get("env") in (None, ""):
            given = any(data.get(name) for name in SECRET_FIELDS)
            data = {**data, "env": Environment.production if given else Environment.development}
        return data

    @model_validator(mode="after")
    def _presence_heartbeat_within_ttl(self) -> Settings:
        if self.presence_heartbeat_seconds >= self.presence_ttl_seconds:
            raise ValueError(
                "TIDINGS_PRESENCE_HEARTBEAT_SECONDS must be shorter than TIDINGS_PRESENCE_TTL_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.env is Environment.production and not (
            self.jwt_secret or self.jwt_public_key_path or self.jwks_url
        ):
            raise ValueError(
                "production needs TIDINGS_JWT_SECRET, TIDINGS_JWT_PUBLIC_KEY_PATH or TIDINGS_JWKS_URL (production "
                "is the default once a secret such as TIDINGS_PUBLISH_KEY is set; TIDINGS_ENV=development to develop)"
            )
        return self

    @property
    def is_development(self) -> bool:
        return self.env is Environment.development

    @property
    def effective_docs_enabled(self) -> bool:
        return self.is_development if self.docs_enabled is None else self.docs_enabled

    @property
    def uses_redis(self) -> bool:
        return not self.bus_url.startswith("memory://")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'tidings.db'}"

    @property
    def effective_stream_buffer_total_bytes(self) -> int:
        if self.stream_buffer_total_bytes:
            return self.stream_buffer_total_bytes
        return min(128 << 20, max(16 << 20, _usable_memory() // 32))

    @property
    def effective_worker_in_process(self) -> bool:
        return (not self.uses_redis) if self.worker_in_process is None else self.worker_in_process


def _origin(value: str) -> str:
    """An origin as browsers send it in `Origin`: lower-case scheme and host, a port only when not the default."""
    if value.strip() == "*" or "*" in value:
        raise ValueError("list exact origins: a wildcard is never combined with credentials")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{value!r} is not an origin (scheme://host[:port], without a path)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{value!r} is not an origin (scheme://host[:port], without a path)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _usable_memory() -> int:
    """The memory this process may use: the cgroup (v2, then v1) limit when there is one, else physical RAM."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            return min(int(raw), physical)
    return int(physical)


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, turning validation errors into a ConfigError naming variables."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        # the variable in capitals, what is inside it (a JSON mapping's keys) as written
        name = (
            f"{ENV_PREFIX}{loc[0].upper()}" + "".join(f"[{p!r}]" for p in loc[1:]) if loc else "configuration"
        )
        lines.append(f"{name}: {err['msg']}")
    return "invalid configuration: " + "; ".join(lines)
