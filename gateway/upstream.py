"""Calling providers: model resolution, retries with backoff and jitter, Retry-After, deadlines, fallbacks.

This is the only place that decides whether a provider failure is retried, moved to a fallback model,
relayed as is, or turned into a 502/504. Providers themselves never retry.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from gateway import metrics
from gateway.context import Call, Request, Route
from gateway.errors import GatewayError, InvalidRequest, NotFound, RateLimited, UpstreamError, UpstreamTimeout
from gateway.logs import get_logger
from gateway.policy import WILDCARD, Policy
from gateway.policy.core import ModelConfig
from gateway.providers import Provider, ProviderRequest, UpstreamReply
from gateway.redact import Redactor, redactor

log = get_logger("gateway.upstream")
_MESSAGE_CHARS = 500
"""How much of a provider's error text a client sees."""


@dataclass(frozen=True, slots=True)
class Target:
    """A model as the gateway knows it, and how to reach it."""

    name: str
    upstream_model: str
    provider: Provider
    config: ModelConfig


class ModelCatalog:
    """The models the policy declares; a ``*`` entry sends any other name to its provider."""

    def __init__(self, policy: Policy, providers: Mapping[str, Provider]) -> None:
        self.providers = providers
        self._models = {n: m for n, m in policy.models.items() if n != WILDCARD}
        self._wildcard = policy.models.get(WILDCARD)
        default = self._wildcard.provider if self._wildcard else next(iter(policy.providers), None)
        self.default_provider = providers[default] if default else None

    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str) -> ModelConfig | None:
        return self._models.get(name)

    def resolve(self, name: str) -> Target:
        config = self._models.get(name)
        if config is not None:
            return Target(name, config.upstream_model or name, self.providers[config.provider], config)
        if self._wildcard is not None:
            return Target(name, name, self.providers[self._wildcard.provider], self._wildcard)
        raise NotFound(
            f"The model '{name}' does not exist on this gateway.", param="model", code="model_not_found"
        )

    def chain(self, target: Target) -> list[Target]:
        """The target, then its fallbacks in policy order (those of the same provider type: a fallback
        must speak the protocol the target was chosen for)."""
        fallbacks = (self.resolve(name) for name in target.config.fallbacks)
        kind = target.provider.config.type
        return [target, *(t for t in fallbacks if kind != "anthropic" or t.provider.config.type == kind)]

    def serving(self, route: Route, request: Request) -> Route:
        """The route, with a target whose provider speaks the request's protocol natively when the
        protocol needs one: a model only the ``*`` entry names goes to the first such provider; a
        model declared on another provider is a 400 naming it."""
        kind = request.protocol.provider_type
        target = route.target
        if kind is None or target.provider.config.type == kind:
            return route
        native = next((p for p in self.providers.values() if p.config.type == kind), None)
        if target.config is self._wildcard and native is not None:
            return replace(route, target=Target(target.name, target.upstream_model, native, target.config))
        raise InvalidRequest(
            f"The model '{target.name}' is served by provider '{target.provider.name}', which does not "
            f"speak {request.endpoint}; name a model of a 'type: {kind}' provider.",
            param="model",
            code="model_not_supported",
        )


class Upstream:
    """Sends a request to the first target that answers, within each provider's retry policy."""

    async def call(self, call: Call, targets: list[Target]) -> tuple[Target, UpstreamReply]:
        failure: GatewayError | UpstreamReply | None = None
        for i, target in enumerate(targets):
            if i:
                metrics.FALLBACKS.labels(targets[i - 1].name, target.name).inc()
                log.info(
                    "fallback",
                    request_id=call.request_id,
                    from_model=targets[i - 1].name,
                    to_model=target.name,
                )
            body = call.body
            same = body.get("model") == target.upstream_model
            payload = call.raw if same else _with_model(body, target.upstream_model)
            outcome = await self._attempts(target.provider, call, payload)
            if (isinstance(outcome, UpstreamReply) and outcome.status < 400) or _final(outcome):
                return target, outcome  # type: ignore[return-value]
            failure = outcome
        assert failure is not None
        if isinstance(failure, GatewayError):
            raise failure
        raise _as_error(targets[-1].provider, failure)

    async def _attempts(self, provider: Provider, call: Call, payload: bytes) -> GatewayError | UpstreamReply:
        retry = provider.config.retry
        deadline = time.monotonic() + retry.deadline_s
        outcome: GatewayError | UpstreamReply
        for attempt in range(retry.attempts):
            started = time.perf_counter()
            reply: UpstreamReply | None = None
            try:
                sent = ProviderRequest(
                    call.path, payload, call.stream, headers=call.headers, query=call.query
                )
                reply = await send_once(provider, sent)
            except GatewayError as exc:
                outcome, reason = exc, "timeout" if isinstance(exc, UpstreamTimeout) else "connection"
            else:
                outcome, reason = reply, str(reply.status)
                if not _retryable(reply.status):
                    return reply
            finally:
                metrics.UPSTREAM_SECONDS.labels(provider.name).observe(time.perf_counter() - started)
            if attempt + 1 >= retry.attempts:
                break
            delay = _retry_after(reply) if reply is not None else None
            if delay is None:
                delay = min(retry.backoff_max_s, retry.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.0)
            if time.monotonic() + delay > deadline:
                break
            metrics.UPSTREAM_RETRIES.labels(provider.name, reason).inc()
            await asyncio.sleep(delay)
        kind = outcome.code if isinstance(outcome, GatewayError) else str(outcome.status)
        metrics.UPSTREAM_ERRORS.labels(provider.name, kind or "error").inc()
        return outcome


async def send_once(provider: Provider, request: ProviderRequest) -> UpstreamReply:
    """One provider call; a timeout becomes a 504 and a connection problem a 502."""
    try:
        return await provider.send(request)
    except TimeoutError:
        raise UpstreamTimeout(f"Provider '{provider.name}' did not answer in time.") from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"Could not reach provider '{provider.name}': {type(exc).__name__}.") from None


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500 or status in (401, 403)


def _final(outcome: GatewayError | UpstreamReply) -> bool:
    """Client errors (400, 404, 422...) are the caller's to see: no fallback can fix them."""
    return (
        isinstance(outcome, UpstreamReply) and 400 <= outcome.status < 500 and not _retryable(outcome.status)
    )


def _retry_after(reply: UpstreamReply) -> float | None:
    """Seconds to wait: ``Retry-After`` is either a number of seconds or an HTTP date (RFC 9110)."""
    value = reply.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _with_model(body: dict[str, Any], model: str) -> bytes:
    return orjson.dumps({**body, "model": model})


def _as_error(provider: Provider, reply: UpstreamReply) -> GatewayError:
    """The last provider failure, as the client should see it, without the provider's secrets."""
    clean = redactor(provider.secrets)
    message = _upstream_message(reply.body, clean)
    if reply.status == 429:
        retry_after = reply.headers.get("retry-after")
        headers = {"Retry-After": clean.text(retry_after)} if retry_after is not None else {}
        return RateLimited(
            f"Provider '{provider.name}' is rate limiting: {message}",
            code="upstream_rate_limited",
            headers=headers,
        )
    if reply.status in (401, 403):
        return UpstreamError(
            f"Provider '{provider.name}' rejected the gateway's credentials; tell the operator."
        )
    return UpstreamError(f"Provider '{provider.name}' failed with status {reply.status}: {message}")


def relayed_error(reply: UpstreamReply, clean: Redactor) -> bytes:
    """A provider's error body as the client gets it: redacted, and OpenAI-shaped even when the provider
    sent something else (``text/plain 404: Not Found``, an HTML page, ``{"detail": ...}``)."""
    body = clean.data(reply.body)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return body
    kind = "invalid_request_error" if reply.status < 500 else "server_error"
    error = GatewayError(_upstream_message(body, clean), status=reply.status, type=kind, code=None)
    return orjson.dumps(error.body())


def _upstream_message(body: bytes, clean: Redactor) -> str:
    """The provider's own words about a failure: its error message, else the start of its body. Redacted
    before it is cut short, so no prefix of a secret survives the cut."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        found = parsed.get("error")
        found = found.get("message") if isinstance(found, dict) else found or parsed.get("detail")
        if isinstance(found, str) and found:
            return clean.text(found)[:_MESSAGE_CHARS]
    return clean.text(body.decode("utf-8", "replace")).strip()[:_MESSAGE_CHARS] or "no details"
