"""The policy: one YAML file that configures every stage. ``load_policy`` is the only entry point."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError

from gateway.policy.autoscaler import AutoscalerConfig
from gateway.policy.batching import BatchingConfig
from gateway.policy.budget import BudgetConfig, check_budgets
from gateway.policy.cache import CacheConfig
from gateway.policy.core import (
    AuthConfig,
    LoggingConfig,
    MetricsConfig,
    ModelConfig,
    ProviderConfig,
    Section,
    ServerConfig,
    StoreConfig,
)
from gateway.policy.ledger import LedgerConfig
from gateway.policy.limits import LimitsConfig
from gateway.policy.loader import ConfigError, describe_validation_error, interpolate, read_yaml
from gateway.policy.routing import RoutingConfig, check_routing
from gateway.policy.telemetry import TelemetryConfig

__all__ = ["ConfigError", "Policy", "default_policy_path", "load_policy"]

WILDCARD = "*"


class Policy(Section):
    """The whole policy file; every section is optional."""

    server: ServerConfig = ServerConfig()
    """Listen address, worker processes, body size limit, shutdown drain, admin key."""
    store: StoreConfig = StoreConfig()
    """Shared state: Redis, or the in-process memory store."""
    auth: AuthConfig = AuthConfig()
    """Gateway keys, and the agent and team each one stands for."""
    providers: dict[str, ProviderConfig] = {}
    """The upstream APIs, by name."""
    models: dict[str, ModelConfig] = {}
    """The models agents may ask for, by name, with their provider, tier, context window and fallbacks."""
    logging: LoggingConfig = LoggingConfig()
    """Structured logs on stdout."""
    metrics: MetricsConfig = MetricsConfig()
    """Prometheus metrics."""
    cache: CacheConfig = CacheConfig()
    """The response cache."""
    batching: BatchingConfig = BatchingConfig()
    """Micro-batching of small similar tasks."""
    routing: RoutingConfig = RoutingConfig()
    """Model routing: aliases and rules."""
    budgets: BudgetConfig = BudgetConfig()
    """Token budgets per sprint."""
    limits: LimitsConfig = LimitsConfig()
    """Rate limits (requests, tokens, in flight) across replicas, and the runaway brake."""
    autoscaler: AutoscalerConfig = AutoscalerConfig()
    """The autoscaler sidecar (``llm-gateway autoscale``)."""
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    """The request ledger and heartbeats, for ``llm-gateway report`` and ``replay`` (its default file
    follows the environment when the policy is loaded)."""
    telemetry: TelemetryConfig = TelemetryConfig()
    """OpenTelemetry traces (off unless ``telemetry.otlp`` is set)."""


def default_policy_path() -> Path:
    """``$GATEWAY_CONFIG`` if set, else ``policies/default.yaml`` in the working directory, in the source
    checkout, or as installed with the package (``<prefix>/share/llm-gateway/policies``)."""
    env = os.environ.get("GATEWAY_CONFIG")
    if env:
        return Path(env)
    candidates = (
        Path("policies/default.yaml"),
        Path(__file__).resolve().parents[2] / "policies" / "default.yaml",
        Path(sys.prefix) / "share" / "llm-gateway" / "policies" / "default.yaml",
    )
    return next((path for path in candidates if path.exists()), candidates[0])


def load_policy(path: str | Path, env: Mapping[str, str] | None = None) -> Policy:
    """Load and validate a policy file; raises :class:`ConfigError` naming file, key and problem."""
    file = str(path)
    raw = interpolate(read_yaml(path), os.environ if env is None else env, file)
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        raise describe_validation_error(file, exc) from None
    check_references(policy, file)
    return policy


def check_references(policy: Policy, file: str) -> None:
    """Names that point elsewhere in the policy must exist: caught at start, not at request time."""
    for name, model in policy.models.items():
        if model.provider not in policy.providers:
            known = ", ".join(sorted(policy.providers)) or "none declared"
            raise ConfigError(
                file, f"models.{name}.provider", f"unknown provider '{model.provider}' (known: {known})"
            )
        for i, fallback in enumerate(model.fallbacks):
            if fallback in (name, WILDCARD) or fallback not in policy.models:
                raise ConfigError(
                    file, f"models.{name}.fallbacks[{i}]", f"'{fallback}' is not another declared model"
                )
    for name, provider in policy.providers.items():
        if provider.type == "openai" and not provider.base_url.startswith(("http://", "https://")):
            raise ConfigError(file, f"providers.{name}.base_url", "must start with http:// or https://")
    check_routing(policy.routing, policy.models, WILDCARD, file)
    check_budgets(policy.budgets, file)
    if policy.store.url or policy.store.mode != "auto":
        from gateway.store.topology import parse  # the one reader of store.url

        try:
            parse(policy.store)
        except ValueError as exc:
            raise ConfigError(file, "store.url", str(exc)) from None
