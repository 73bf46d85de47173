"""The gateway policy a benchmark runs with: every model to the fake upstream, plus a scenario's overrides.

Only what the measurement needs differs from ``policies/default.yaml``: loopback, the fake provider, the
logging level under test, a short drain so stopping is quick, and Redis when there are several workers.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PROVIDER = "fake"
ANTHROPIC = "fake-anthropic"
UPSTREAM = "{upstream}"
"""In a scenario's policy strings, the fake upstream's base URL (e.g. an OTLP endpoint on it)."""
SHIPPED_POLICY = Path(__file__).resolve().parents[1] / "policies" / "default.yaml"


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it; nested mappings merge, everything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def gateway_policy(
    upstream_url: str, log_level: str, store_url: str = "", overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "drain_timeout_s": 1},
        "store": {"url": store_url},
        "providers": {
            PROVIDER: {"type": "openai", "base_url": upstream_url + "/v1", "api_key": "sk-bench-provider"},
            # the same fake, for /v1/messages (models only "*" names go to the first type: anthropic)
            ANTHROPIC: {"type": "anthropic", "base_url": upstream_url, "api_key": "sk-bench-provider"},
        },
        "models": {"*": {"provider": PROVIDER}},
        "logging": {"level": log_level},
    }
    return deep_merge(base, _with_upstream(overrides or {}, upstream_url))


def _with_upstream(value: Any, upstream_url: str) -> Any:
    if isinstance(value, str):
        return value.replace(UPSTREAM, upstream_url)
    if isinstance(value, Mapping):
        return {key: _with_upstream(item, upstream_url) for key, item in value.items()}
    return value


def write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def shipped_section(name: str) -> Any:
    """A section of ``policies/default.yaml`` as written (no interpolation), or None if it has none."""
    data = yaml.safe_load(SHIPPED_POLICY.read_text(encoding="utf-8")) or {}
    return copy.deepcopy(data.get(name))


def shipped_models(provider: str) -> dict[str, Any]:
    """The shipped model catalogue (names, tiers, fallbacks), every model served by ``provider``."""
    return {
        name: {**(config or {}), "provider": provider}
        for name, config in (shipped_section("models") or {}).items()
    }
