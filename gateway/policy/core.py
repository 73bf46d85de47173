"""Schema of the core sections: server, store, auth, providers, models, logging, metrics."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


class StoreConfig(Section):
    url: str = ""
    """``redis://`` / ``rediss://`` URL; empty means the in-process memory store."""
    prefix: str = "llmgw:"
    memory_max_items: int = Field(100_000, ge=1)
    memory_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Bounds of the in-process memory store (the oldest-used entries go first)."""
    max_connections: int = Field(64, ge=1)
    socket_timeout_s: float = Field(2.0, gt=0)


NAME_PATTERN = r"^[A-Za-z0-9_.@\-]{1,128}$"
"""Agent and team names: no ``/``, ``:`` or spaces, so a name is one unambiguous part of a cache scope,
a budget field or a metric label."""
NAME_RULE = "1-128 characters of letters, digits and _ . @ -"


class ApiKey(Section):
    key: str | None = None
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    agent: str | None = None
    team: str = "default"
    trust_agent_header: bool | None = None
    """A key without an agent: may the client name its agent (``X-Agent-Id``, body ``user``)? Unset: only
    when the policy keeps neither answers nor budgets per agent."""

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
    keys: list[ApiKey] = []
    """Empty list: open mode (any or no key is accepted; a warning is logged at start)."""


class RetryConfig(Section):
    attempts: int = Field(3, ge=1, le=10)
    backoff_base_s: float = Field(0.2, ge=0)
    backoff_max_s: float = Field(8.0, ge=0)
    deadline_s: float = Field(60.0, gt=0)
    """No retry starts after this many seconds from the first attempt."""


DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1"}
"""Where a provider of each type goes when ``base_url`` is not given; a litellm provider has none of its own
(litellm picks the API of the model's provider), so an Anthropic call never goes to OpenAI with its key."""


class ProviderConfig(Section):
    type: Literal["openai", "litellm"] = "openai"
    base_url: str = ""
    """Empty for ``type: litellm`` means litellm's own default for the model's provider."""
    api_key: str = ""
    timeout_s: float = Field(600.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    max_connections: int = Field(512, ge=1)
    retry: RetryConfig = RetryConfig()
    headers: dict[str, str] = {}
    litellm_prefix: str = ""
    """For ``type: litellm``: prepended to the model name (e.g. ``anthropic/``)."""

    @model_validator(mode="before")
    @classmethod
    def _base_url_of_type(cls, data: object) -> object:
        if isinstance(data, dict) and "base_url" not in data:
            return {**data, "base_url": DEFAULT_BASE_URLS.get(str(data.get("type", "openai")), "")}
        return data


class Price(Section):
    """USD per million tokens. Cached input (read from the provider's prompt cache) and cache writes
    cost the input rate unless given."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)
    cache_write_per_mtok: float | None = Field(None, ge=0)


class ModelConfig(Section):
    provider: str
    upstream_model: str | None = None
    """Name sent to the provider; defaults to the model's own name."""
    tier: Literal["small", "medium", "large"] = "medium"
    context_window: int = Field(128_000, ge=1)
    fallbacks: list[str] = []
    price: Price | None = None
    """Overrides the model's price in the genai-prices data (the default source)."""


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: readable lines when the log goes to a terminal, JSON lines otherwise."""
    requests: bool = True
    """One JSON line per request."""


class MetricsConfig(Section):
    max_agent_labels: int = Field(200, ge=1)
    """Agents beyond this many distinct names share the label ``_other`` (bounded cardinality)."""
