"""What ``serve`` tells the operator at start, and which providers have no key (also in ``/readyz``).

A provider of ``type: openai`` without ``api_key`` sends no Authorization header: right for a local
vLLM or Ollama server, wrong for the OpenAI API, which refuses every such request. So a missing key is a
warning, and only a provider at a host that always needs a key makes the gateway not ready.
(``type: litellm`` providers are not checked: litellm reads its own provider's variable, e.g.
``ANTHROPIC_API_KEY``, when the policy gives none.)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.policy import Policy
from gateway.policy.core import ProviderConfig

KEYED_HOSTS = ("api.openai.com",)
"""Hosts that refuse every request without a key."""
NO_KEY = "no api key"


def client_base_url(host: str, port: int) -> str:
    """The ``OPENAI_BASE_URL`` a client on this machine uses (a wildcard listen address is not one)."""
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/v1"


def masked_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def store_text(policy: Policy) -> str:
    return masked_url(policy.store.url) if policy.store.url else "memory (in-process)"


def ledger_text(policy: Policy) -> str:
    if not policy.ledger.enabled:
        return "off"
    return f"redis stream {policy.ledger.stream}" if policy.store.url else policy.ledger.file


def key_required(provider: ProviderConfig) -> bool:
    return (urlsplit(provider.base_url).hostname or "") in KEYED_HOSTS


def missing_keys(policy: Policy) -> dict[str, bool]:
    """Providers of ``type: openai`` without a key, each with whether its host requires one."""
    return {
        name: key_required(provider)
        for name, provider in policy.providers.items()
        if provider.type == "openai" and not provider.api_key
    }


def announce(policy: Policy, policy_file: str, host: str, port: int, log: Any) -> None:
    """One ``serving`` line (where clients point, the policy, the store, the ledger) and one warning
    per provider without a key."""
    log.info(
        "serving",
        openai_base_url=client_base_url(host, port),
        listen=f"{host}:{port}",
        policy=policy_file,
        store=store_text(policy),
        ledger=ledger_text(policy),
    )
    for name, required in missing_keys(policy).items():
        consequence = (
            "the provider refuses every request: /readyz reports not ready"
            if required
            else "requests go out without Authorization (fine for a local server)"
        )
        log.warning(
            "provider_without_key",
            provider=name,
            base_url=policy.providers[name].base_url,
            detail=f"providers.{name}.api_key is empty: {consequence}",
        )
