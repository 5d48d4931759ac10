"""The settings schema: what a config file may say, validated once at start."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from yourouter.config.presets import PRESETS

#: Wire protocols an upstream may speak.
ProviderType = Literal["openai", "anthropic", "google", "azure", "bedrock", "ark", "google-search", "brave",
                       "searxng"]
SEARCH_TYPES = frozenset({"google-search", "brave", "searxng"})

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def memory_or_redis(value: str | None) -> str | None:
    """A backend setting: None (or `memory`) = in process, else a Redis URL."""
    if value in (None, "", "memory"):
        return None
    if not value.startswith(_REDIS_SCHEMES):
        raise ValueError("must be memory or a redis://, rediss:// or unix:// URL")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyAttributes(_Strict):
    """What a client key may do: the same attributes for static keys, the admin API and the CLI."""

    models: list[str] = Field(default_factory=lambda: ["*"])  # names or glob patterns; "*" = all
    vendors: list[str] = Field(default_factory=lambda: ["*"])  # vendors it may reach; "*" = all
    rpm: int | None = Field(default=None, ge=1)  # requests a minute
    tpm: int | None = Field(default=None, ge=1)  # tokens a minute (prompt estimate + max output, reconciled)
    max_concurrency: int | None = Field(default=None, ge=1)  # requests in flight
    budget_usd: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=9)
    budget_period: Literal["day", "month"] | None = None  # None = a lifetime budget; UTC boundaries
    expires_at: dt.datetime | None = None  # an offset-less time is UTC
    disabled: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("vendors")
    @classmethod
    def _lower_vendors(cls, value: list[str]) -> list[str]:
        return [v.lower() for v in value]

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


class StaticKey(KeyAttributes):
    """A client key declared in the config file (kept hashed in memory, never written to the database)."""

    key: str = Field(min_length=8)
    name: str = Field(min_length=1)


class PriceConfig(_Strict):
    """A price in USD: per 1M input, output and cached-input tokens, and per call for things billed per query
    (search engines). A field left out is 0, except `cached_input`, which then bills at the `input` price."""

    input: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    output: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    cached_input: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    per_query: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _not_empty(self) -> PriceConfig:
        if not self.model_fields_set:
            raise ValueError("a price needs at least one of input, output, cached_input, per_query")
        return self


class ModelEntry(_Strict):
    """A model a deployment serves: the name clients use, the upstream's own name, and aliases."""

    name: str = Field(min_length=1)
    upstream: str | None = None
    aliases: list[str] = Field(default_factory=list)
    price: PriceConfig | None = None  # this deployment's price for the model; wins over `prices` and the table

    @property
    def upstream_name(self) -> str:
        return self.upstream or self.name


class ProviderConfig(_Strict):
    """One upstream deployment."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    vendor: str = ""
    type: ProviderType | None = None  # default: from the vendor's preset (config/presets.py), else openai
    base_url: str = ""  # default: from the vendor's preset
    api_key: str | None = None
    api_version: str | None = None  # Azure OpenAI's `api-version` query parameter
    #: AWS Bedrock: the region (signing and the default base URL) and, optionally, static credentials; without
    #: them (and without `api_key`, a Bedrock API key) botocore's default chain is used (env, profile, role).
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    models: list[ModelEntry] = Field(default_factory=list)  # required, except for search engines ("search")
    cx: str | None = None  # Google Programmable Search: the engine used when a client sends no `cx`
    #: Anthropic needs `max_tokens`; used when the client gave none (default: per model family).
    default_max_tokens: int | None = Field(default=None, ge=1)
    priority: int = 0  # lower is tried first
    weight: float = Field(default=1.0, gt=0)  # for `routing.strategy: weighted`
    max_concurrency: int | None = Field(default=None, ge=1)  # at the cap the deployment counts as busy
    #: The deployment's own limits, enforced (shared by every instance with a Redis limits backend): a deployment
    #: at one is skipped for the next candidate; in-process, it also orders as busy before it is reached.
    rpm: int | None = Field(default=None, ge=1)  # requests a minute
    tpm: int | None = Field(default=None, ge=1)  # tokens a minute (estimated at admission, reconciled)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    first_byte_timeout_s: float = Field(default=120.0, gt=0)  # until the response headers arrive
    read_timeout_s: float = Field(default=600.0, gt=0)  # longest silence between chunks once started
    total_timeout_s: float | None = Field(default=None, gt=0)  # whole request, streams included; None = no cap
    max_connections: int = Field(default=0, ge=0)

    @field_validator("models", mode="before")
    @classmethod
    def _model_entries(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _defaults_from_vendor(self) -> ProviderConfig:
        vendor = (self.vendor or self.name).lower()
        object.__setattr__(self, "vendor", vendor)
        preset = PRESETS.get(vendor)
        if self.type is None:
            object.__setattr__(self, "type", preset.type if preset else "openai")
        if not self.base_url and self.type == "bedrock":
            if not self.region:
                raise ValueError("region is required for a Bedrock deployment (or give base_url)")
            object.__setattr__(self, "base_url", f"https://bedrock-runtime.{self.region}.amazonaws.com")
        if not self.models:
            if self.type not in SEARCH_TYPES:
                raise ValueError("models: at least one model is required")
            object.__setattr__(self, "models", [ModelEntry(name="search")])
        if bool(self.aws_access_key_id) != bool(self.aws_secret_access_key):
            raise ValueError("aws_access_key_id and aws_secret_access_key go together")
        if not self.base_url:
            if preset is None or preset.base_url is None:
                raise ValueError(f"base_url is required (vendor {vendor!r} has no default)")
            object.__setattr__(self, "base_url", preset.base_url)
        return self


class UsageConfig(_Strict):
    """The usage ledger's batched writer."""

    batch_size: int = Field(default=500, ge=1)
    flush_interval_s: float = Field(default=0.5, gt=0)
    max_pending: int = Field(default=100_000, ge=1)  # rows held in memory; beyond, rows go to the spill file
    spill_dir: str = "./yourouter-spill"  # rows the database could not take, replayed later (created when needed)
    #: Every row also goes to a journal in `spill_dir` until it is committed, so a killed process loses none.
    journal: bool = True


class MediaConfig(_Strict):
    """Fetching images by URL for providers that need inline bytes (Gemini)."""

    allow_private_networks: bool = False  # SSRF guard: loopback, private and link-local addresses are refused
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    fetch_timeout_s: float = Field(default=10.0, gt=0)


class LimitsConfig(_Strict):
    """Where key limits and budgets are counted, and how admission estimates a request."""

    #: None = in this process (one instance); `redis://host:6379/0` = shared by every worker and instance.
    backend: str | None = None
    #: The most a request may reserve against a budget while in flight (its worst case is capped here).
    reserve_ceiling_usd: Decimal = Field(default=Decimal(10), ge=0)
    #: The output assumed for TPM and reservations when a request sets no max_tokens.
    default_max_output_tokens: int = Field(default=4096, ge=1)
    #: When the backend is unreachable: refuse requests of limited keys (false, 500) or let them through (true).
    fail_open: bool = False
    #: Seconds an unsettled request keeps its slot and reservation (a crashed instance's are freed after this).
    inflight_ttl_s: float = Field(default=900.0, gt=0)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        return memory_or_redis(value)


class VideoTasksConfig(_Strict):
    """The video task poller: every unsettled task is fetched from its deployment about this often."""

    poll_interval_s: float = Field(default=10.0, gt=0)  # jittered +-20 %
    lease_s: float = Field(default=60.0, gt=0)  # a poller's hold on a task (another takes over after it)
    batch: int = Field(default=50, ge=1)  # tasks leased per round


class SearchConfig(_Strict):
    """`/customsearch/v1`: the result cache (identical queries within the TTL cost nothing)."""

    cache_ttl_s: float = Field(default=0.0, ge=0)  # 0 = no cache
    cache_backend: str | None = None  # None = in process; redis://... = shared by every instance
    cache_max_entries: int = Field(default=10_000, ge=1)

    @field_validator("cache_backend")
    @classmethod
    def _redis_only(cls, value: str | None) -> str | None:
        return memory_or_redis(value)


class RoutingConfig(_Strict):
    strategy: Literal["latency", "least-busy", "weighted", "ordered", "cost"] = "latency"
    #: Models to try, translated as needed, when every deployment of a model failed: {gpt-4o: [claude-sonnet-4-5]}
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    cooldown_failures: int = Field(default=3, ge=1)  # failures within the window that start a cooldown
    cooldown_window_s: float = Field(default=30.0, gt=0)
    cooldown_s: float = Field(default=30.0, gt=0)
    retry_backoff_s: float = Field(default=0.2, ge=0)  # before retrying the same deployment (jittered, doubling)
    max_retry_wait_s: float = Field(default=5.0, ge=0)  # a longer Retry-After is answered to the client instead


class Settings(_Strict):
    """The whole resolved configuration."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    database_url: str = "sqlite:///./yourouter.db"
    master_key: str | None = None
    keys: list[StaticKey] = Field(default_factory=list)
    providers: list[ProviderConfig] = Field(default_factory=list)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    key_cache_ttl_s: float = Field(default=3.0, ge=0)  # how soon a key change made elsewhere applies here
    log_requests: bool = True
    max_attempts: int = Field(default=3, ge=1)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    #: Shared state for many workers or instances: the default limits backend and search cache, and where
    #: deployment cooldowns are shared (`redis://host:6379/0`).
    redis_url: str | None = None
    video_tasks: VideoTasksConfig = Field(default_factory=VideoTasksConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    #: Prices by model name (or search provider name), over the shipped table (yourouter/pricing/table.py).
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    #: Serve the built-in OpenAI simulator under /_demo/upstream (what `yourouter serve --demo` wires to).
    demo: bool = False

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(_REDIS_SCHEMES):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value or None

    @model_validator(mode="after")
    def _shared_defaults(self) -> Settings:
        """`redis_url` is the default for the mechanisms that can share state and were not given their own."""
        if self.redis_url:
            if "backend" not in self.limits.model_fields_set:
                object.__setattr__(self, "limits", self.limits.model_copy(update={"backend": self.redis_url}))
            if "cache_backend" not in self.search.model_fields_set:
                object.__setattr__(self, "search", self.search.model_copy(update={"cache_backend": self.redis_url}))
        return self

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for provider in self.providers:
            if provider.name in seen:
                raise ValueError(f"providers: duplicate deployment name {provider.name!r}")
            seen.add(provider.name)
        names: set[str] = set()
        for key in self.keys:
            if key.key in names:
                raise ValueError(f"keys: key {key.name!r} is listed twice")
            names.add(key.key)
        return self
