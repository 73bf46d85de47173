"""Schema of the core sections: server, store, auth, providers, models, logging, metrics."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base for every policy section: unknown keys are errors, values are immutable after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=256)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    drain_timeout_s: float = Field(30.0, ge=0)
    admin_key: str = ""


class StoreTls(Section):
    """TLS for ``rediss://`` URLs (and ``rediss+cluster://``, ``rediss+sentinel://``)."""

    ca_file: str = ""
    """CA bundle that signed the servers' certificates; empty: the system's CAs."""
    cert_file: str = ""
    key_file: str = ""
    """Client certificate and key, for servers that require mutual TLS."""
    verify: bool = True
    """Check the servers' certificates and host names (turn off only for a test server)."""


class StoreConfig(Section):
    url: str = ""
    """Empty: the in-process memory store. One server: ``redis://``, ``rediss://`` (TLS), ``unix://``.
    Redis Cluster: ``redis+cluster://HOST:PORT[,HOST:PORT...]`` (any nodes; or ``mode: cluster``).
    Sentinel: ``redis+sentinel://HOST:26379[,HOST:26379...]/MASTER[/DB]``."""
    mode: Literal["auto", "single", "cluster", "sentinel"] = "auto"
    """``auto``: from the URL scheme; ``cluster`` / ``sentinel`` with a plain ``redis://`` URL."""
    username: str = ""
    password: str = ""
    """ACL user and password of the data nodes (override the URL's; ``${ENV}`` keeps them out of files)."""
    sentinel_master: str = ""
    sentinels: list[str] = []
    """Master name and extra sentinel ``HOST:PORT`` addresses (besides the URL's)."""
    sentinel_username: str = ""
    sentinel_password: str = ""
    """Credentials of the sentinels themselves, when they differ from the data nodes'."""
    tls: StoreTls = StoreTls()
    prefix: str = "llmgw:"
    memory_max_items: int = Field(100_000, ge=1)
    memory_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Bounds of the in-process memory store (the oldest-used entries go first)."""
    max_connections: int = Field(64, ge=1)
    """Per process (and per node on a cluster); busy pools make callers wait up to the socket timeout."""
    socket_timeout_s: float = Field(2.0, gt=0)
    retries: int = Field(4, ge=0, le=20)
    """Retries of a command after a connection error or timeout (jittered exponential backoff)."""
    retry_backoff_max_s: float = Field(0.5, gt=0)
    health_check_interval_s: float = Field(5.0, ge=0)
    """A connection idle this long is PINGed before use, so a dead one is replaced, not failed on."""


class ApiKey(Section):
    key: str | None = None
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    agent: str | None = None
    team: str = "default"

    @model_validator(mode="after")
    def _one_key(self) -> ApiKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of 'key' or 'key_sha256'")
        return self


class AuthConfig(Section):
    keys: list[ApiKey] = []
    """Empty list: open mode (any or no key is accepted; a warning is logged at start)."""


class RetryConfig(Section):
    attempts: int = Field(3, ge=1, le=10)
    backoff_base_s: float = Field(0.2, ge=0)
    backoff_max_s: float = Field(8.0, ge=0)
    deadline_s: float = Field(60.0, gt=0)
    """No retry starts after this many seconds from the first attempt."""


class ProviderConfig(Section):
    type: Literal["openai", "litellm"] = "openai"
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    timeout_s: float = Field(600.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    max_connections: int = Field(512, ge=1)
    retry: RetryConfig = RetryConfig()
    headers: dict[str, str] = {}
    litellm_prefix: str = ""
    """For ``type: litellm``: prepended to the model name (e.g. ``anthropic/``)."""


class Price(Section):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class ModelConfig(Section):
    provider: str
    upstream_model: str | None = None
    """Name sent to the provider; defaults to the model's own name."""
    tier: Literal["small", "medium", "large"] = "medium"
    context_window: int = Field(128_000, ge=1)
    fallbacks: list[str] = []
    price: Price | None = None
    """USD per million tokens; when absent, litellm's model price map is used if installed."""


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    requests: bool = True
    """One JSON line per request."""


class MetricsConfig(Section):
    max_agent_labels: int = Field(200, ge=1)
    """Agents beyond this many distinct names share the label ``_other`` (bounded cardinality)."""
