"""Schema of the core sections: server, store, auth, providers, models, logging, metrics."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    """Base for every policy section: unknown keys are errors, values are immutable after load. The string
    literal after a field is its documentation (``Field.description``), from which docs/policy.md is built."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ServerConfig(Section):
    """The HTTP listener of ``llm-gateway serve`` (``--host``, ``--port`` and ``--workers`` override it)."""

    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = Field(8080, ge=1, le=65535)
    """Port to listen on."""
    workers: int = Field(1, ge=1, le=256)
    """Serving processes sharing the port; above 1 needs a shared store (``store.url``), since cache,
    budgets and logs must be shared between them."""
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    """Larger request bodies get a 413."""
    drain_timeout_s: float = Field(30.0, ge=0)
    """After SIGTERM the gateway stops accepting connections and gives in-flight requests this long to
    finish, then exits 0."""
    header_timeout_s: float = Field(10.0, gt=0)
    """A client must send a whole request head within this long of connecting (on a kept-alive connection:
    of its first byte), else it gets 408 and is disconnected, so slow clients cannot hold connections."""
    keepalive_timeout_s: float = Field(75.0, gt=0)
    """An idle kept-alive connection closes after this long (keep it above a load balancer's idle timeout)."""
    admin_key: str = ""
    """Bearer key of the ``/admin/*`` API; empty disables it. The default policy reads
    ``${GATEWAY_ADMIN_KEY:-}``."""


class StoreTls(Section):
    """TLS for ``rediss://`` URLs (and ``rediss+cluster://``, ``rediss+sentinel://``)."""

    ca_file: str = ""
    """CA bundle that signed the servers' certificates; empty: the system's CAs."""
    cert_file: str = ""
    """Client certificate, for servers that require mutual TLS."""
    key_file: str = ""
    """Client certificate's key, for servers that require mutual TLS."""
    verify: bool = True
    """Check the servers' certificates and host names (turn off only for a test server)."""


class StoreConfig(Section):
    """Where shared state lives: cache entries, budget counters, the routing log, locks, the ledger."""

    url: str = ""
    """Empty: the in-process memory store (one process). One server: ``redis://``, ``rediss://`` (TLS),
    ``unix://``. Redis Cluster: ``redis+cluster://HOST:PORT[,HOST:PORT...]`` (any nodes; or
    ``mode: cluster``). Sentinel: ``redis+sentinel://HOST:26379[,HOST:26379...]/MASTER[/DB]``. The
    default policy reads ``${REDIS_URL:-}``."""
    mode: Literal["auto", "single", "cluster", "sentinel"] = "auto"
    """``auto``: from the URL scheme; ``cluster`` / ``sentinel`` with a plain ``redis://`` URL."""
    username: str = ""
    """ACL user of the data nodes (overrides the URL's; ``${ENV}`` keeps it out of files)."""
    password: str = ""
    """Password of the data nodes (overrides the URL's; ``${ENV}`` keeps it out of files)."""
    sentinel_master: str = ""
    """The master name Sentinel knows (besides the URL's path)."""
    sentinels: list[str] = []
    """Extra sentinel ``HOST:PORT`` addresses, besides the URL's."""
    sentinel_username: str = ""
    """ACL user of the sentinels themselves, when it differs from the data nodes'."""
    sentinel_password: str = ""
    """Password of the sentinels themselves, when it differs from the data nodes'."""
    tls: StoreTls = StoreTls()
    """TLS settings for ``rediss://`` (and its cluster and Sentinel forms)."""
    prefix: str = "llmgw:"
    """Prefix of every Redis key the gateway and the autoscaler write (streams are named as given)."""
    memory_max_items: int = Field(100_000, ge=1)
    """Entries the in-process memory store keeps; the least recently used go first."""
    memory_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Bytes the in-process memory store keeps; the least recently used entries go first."""
    max_connections: int = Field(64, ge=1)
    """Redis connection pool size per process (and per node on a cluster); beyond it an operation waits
    for a free connection (up to ``socket_timeout_s``)."""
    socket_timeout_s: float = Field(2.0, gt=0)
    """Redis connect, read and pool-wait timeout; a store that does not answer in time is an error."""
    retries: int = Field(4, ge=0, le=20)
    """Retries of a command after a connection error or timeout (jittered exponential backoff)."""
    retry_backoff_max_s: float = Field(0.5, gt=0)
    """The longest wait between two retries."""
    health_check_interval_s: float = Field(5.0, ge=0)
    """A connection idle this long is PINGed before use, so a dead one is replaced, not failed on."""


NAME_PATTERN = r"^[A-Za-z0-9_.@\-]{1,128}$"
"""Agent and team names: no ``/``, ``:`` or spaces, so a name is one unambiguous part of a cache scope,
a budget field or a metric label."""
NAME_RULE = "1-128 characters of letters, digits and _ . @ -"


class ApiKey(Section):
    """One gateway key, which agents send as ``OPENAI_API_KEY`` (``Authorization: Bearer``). Give exactly one
    of ``key`` and ``key_sha256``."""

    key: str | None = None
    """The key in clear text."""
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    """The key's SHA-256 in hex, so the policy file holds no usable key."""
    agent: str | None = None
    """The agent this key belongs to; then ``X-Agent-Id`` is ignored. Unset: see ``trust_agent_header``."""
    team: str = "default"
    """The team of the key's requests (cache scope ``team``, metrics, ledger)."""
    trust_agent_header: bool | None = None
    """A key without an agent: may the client name its agent (``X-Agent-Id``, body ``user``)? Unset: yes,
    unless the policy keeps something per agent (``cache.scope: agent`` or any ``budgets.sprints``). A
    key that does not trust the client answers ``X-Agent-Id`` with a 403. Not allowed with ``agent``."""

    @field_validator("agent", "team")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(NAME_PATTERN, value):
            raise ValueError(f"must be {NAME_RULE} (got {value!r})")
        return value

    @model_validator(mode="after")
    def _one_key(self) -> ApiKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of 'key' or 'key_sha256'")
        if self.agent is not None and self.trust_agent_header:
            raise ValueError("a key bound to an agent never takes X-Agent-Id: drop 'trust_agent_header'")
        return self


class AuthConfig(Section):
    """Who may call the gateway."""

    keys: list[ApiKey] = []
    """The gateway keys. Empty list: open mode (any or no key is accepted, and clients name their agent;
    a warning is logged at start)."""


class RetryConfig(Section):
    """Retries of connection errors, 429 and 5xx, with exponential backoff and jitter, honouring
    ``Retry-After``; then the model's ``fallbacks`` are tried."""

    attempts: int = Field(3, ge=1, le=10)
    """Tries in all, the first included."""
    backoff_base_s: float = Field(0.2, ge=0)
    """Wait before the second try; it doubles at each try after that."""
    backoff_max_s: float = Field(8.0, ge=0)
    """Longest wait between two tries."""
    deadline_s: float = Field(60.0, gt=0)
    """No retry starts after this many seconds from the first attempt."""


DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
"""Where a provider of each type goes when ``base_url`` is not given; a litellm provider has none of its own
(litellm picks the API of the model's provider), so an Anthropic call never goes to OpenAI with its key."""


class ProviderConfig(Section):
    """One upstream API, with its own connection pool."""

    type: Literal["openai", "anthropic", "litellm"] = "openai"
    """``openai``: any OpenAI-compatible API. ``anthropic``: the Anthropic Messages API, relayed as is.
    ``litellm``: Anthropic, Gemini, Bedrock, Ollama and others through litellm (``pip install
    'llm-gateway[litellm]'``)."""
    base_url: str = ""
    """Where to reach it. Not given: ``https://api.openai.com/v1`` for ``type: openai``,
    ``https://api.anthropic.com`` (without ``/v1``) for ``type: anthropic``; for ``type: litellm``,
    litellm's own default for the model's provider."""
    api_key: str = ""
    """The gateway's provider key; it never reaches a client. The default policy reads
    ``${OPENAI_API_KEY:-}``."""
    timeout_s: float = Field(600.0, gt=0)
    """Longest wait for a whole answer, or between two chunks of a stream."""
    connect_timeout_s: float = Field(10.0, gt=0)
    """Longest wait for a connection."""
    max_connections: int = Field(512, ge=1)
    """Connections the provider's pool keeps open at most."""
    retry: RetryConfig = RetryConfig()
    """How failures of this provider are retried."""
    headers: dict[str, str] = {}
    """Extra headers sent with every request to this provider."""
    litellm_prefix: str = ""
    """For ``type: litellm``: prepended to the model name (e.g. ``anthropic/``)."""
    anthropic_version: str = "2023-06-01"
    """For ``type: anthropic``: the ``anthropic-version`` header sent when the client sends none."""
    inject_cache_control: bool = False
    """For ``type: anthropic``: a Messages request that sets no ``cache_control`` anywhere gets prompt-cache
    breakpoints on its last tool and its system prompt, so repeated prefixes are read from Anthropic's
    cache (reads cost 0.1x of input, writes 1.25x). The body is then re-encoded; off: relayed as bytes."""

    @model_validator(mode="before")
    @classmethod
    def _base_url_of_type(cls, data: object) -> object:
        if isinstance(data, dict) and "base_url" not in data:
            return {**data, "base_url": DEFAULT_BASE_URLS.get(str(data.get("type", "openai")), "")}
        return data


class Price(Section):
    """USD per million tokens (cost and savings metrics, ledger costs). Cached input (read from the
    provider's prompt cache) and cache writes cost the input rate unless given."""

    input_per_mtok: float = Field(ge=0)
    """USD per million prompt tokens."""
    output_per_mtok: float = Field(ge=0)
    """USD per million completion tokens."""
    cached_input_per_mtok: float | None = Field(None, ge=0)
    """USD per million prompt tokens read from the provider's prompt cache; default the input rate."""
    cache_write_per_mtok: float | None = Field(None, ge=0)
    """USD per million prompt tokens written to the provider's prompt cache; default the input rate."""


class ModelConfig(Section):
    """A model agents may ask for. An entry named ``"*"`` sends any other model name to its provider
    (without one, an unknown model is a 404)."""

    provider: str
    """The ``providers`` entry that serves it."""
    upstream_model: str | None = None
    """Name sent to the provider; defaults to the model's own name."""
    tier: Literal["small", "medium", "large"] = "medium"
    """Its size class, for routing rules that pick a tier."""
    context_window: int = Field(128_000, ge=1)
    """Prompt plus completion tokens it accepts (the router's context guard)."""
    fallbacks: list[str] = []
    """Other declared models tried in order when this one fails after its retries."""
    price: Price | None = None
    """Overrides the model's price in the genai-prices data (the default source)."""


class LoggingConfig(Section):
    """One line per event on stdout (JSON, or readable on a terminal); keys and ``Authorization`` values
    are never logged."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written."""
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: readable lines when the log goes to a terminal, JSON lines otherwise."""
    requests: bool = True
    """One JSON line per request, at ``info``. Not read yet: the line is written either way."""


class MetricsConfig(Section):
    """The Prometheus metrics on ``/metrics``."""

    max_agent_labels: int = Field(200, ge=1)
    """Agent and model label values beyond this many distinct names share the label ``_other`` (bounded
    cardinality)."""
