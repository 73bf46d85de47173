"""The one place that orders the stages of a request.

    identify (validate, estimate: a frozen Request) → budget reserve (Hold, Standing) → route (Route)
      → cache lookup, singleflight (CacheOutcome) → batcher (BatchResult) or upstream (retries,
      fallbacks) → relay, JSON or SSE (Relay) → cache store → budget commit
      → one Outcome for metrics, the request log line and the ledger record (``server.observe``)

Each stage lives in its own module and returns its own frozen result (``gateway/context.py``); this
file calls them in order and hands each result on in the open. What a protocol looks like (bodies,
usage, streams, errors) is its adapter's business (``gateway/protocols``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import cast

import aiohttp
import orjson
from aiohttp import web

from gateway.batcher import Batcher
from gateway.budget import BudgetManager
from gateway.budget.manager import HEADER as BUDGET_HEADER
from gateway.budget.manager import Hold
from gateway.cache import LLMCache, Plan
from gateway.context import BYPASS, NO_BUDGET, CacheOutcome, Call, Outcome, Relay, Request, Route, Usage
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.identity import Authenticator, build_context
from gateway.limits import Admission, Limiter
from gateway.logs import get_logger
from gateway.metrics import LabelLimiter
from gateway.policy import Policy
from gateway.prompt_cache import with_prompt_cache_key
from gateway.protocols import Assembler, Body, Protocol
from gateway.providers import ProviderRequest, UpstreamReply
from gateway.redact import Holdback, Redactor, redactor
from gateway.router import Router
from gateway.sse import UsageWatcher, event_batches, event_data
from gateway.telemetry import OFF, Span, Telemetry
from gateway.upstream import ModelCatalog, Target, Upstream, relayed_error, send_once
from gateway.validation import parse_json

log = get_logger("gateway.pipeline")

OUTCOME = web.RequestKey("outcome", Outcome)
"""What happened to the request, for ``server.observe`` (set once the request is identified)."""
REQUEST_ID = web.RequestKey("request_id", str)
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_NO_CONTROL = dict.fromkeys([*range(0x20), 0x7F])
DELIVERED = web.RequestKey("delivered", bool)
"""Set once a streamed answer's last event is written: a success, whatever the client does next."""
_RELAYED_AS = {"content-type": "Content-Type", "x-request-id": "X-Upstream-Request-Id"}
_PASSTHROUGH_HEADERS = ("Content-Type", "Accept", "OpenAI-Beta", "OpenAI-Organization", "OpenAI-Project")


class Pipeline:
    """Serves one request through every stage; holds the long-lived pieces each stage needs."""

    def __init__(
        self,
        policy: Policy,
        auth: Authenticator,
        catalog: ModelCatalog,
        upstream: Upstream,
        cache: LLMCache,
        router: Router,
        budget: BudgetManager,
        batcher: Batcher,
        limits: Limiter,
        telemetry: Telemetry = OFF,
    ) -> None:
        self.policy = policy
        self.telemetry = telemetry
        self.batcher = batcher
        self.budget = budget
        self.router = router
        self.cache = cache
        self.auth = auth
        self.catalog = catalog
        self.upstream = upstream
        self.limits = limits
        self.agent_label = budget.agent_label  # one bounded agent label set for every metric
        self.model_label = LabelLimiter(policy.metrics.max_agent_labels)

    async def handle(self, request: web.Request, protocol: Protocol) -> web.StreamResponse:
        asked, raw = await self._admit(request, protocol)
        admission = hold = route = None
        cache, relay = BYPASS, Relay()
        try:
            admission = await self.limits.admit(asked, request.headers)  # rate limits and the brake
            hold = await self.budget.reserve(asked)
            route = self.catalog.serving(
                self.router.route(asked, hold.standing if hold else NO_BUDGET), asked
            )
            plan = self.cache.plan(asked, route.model)
            cache = await self.cache.fetch(plan, route.model) if plan is not None else BYPASS
            so_far = _outcome(asked, admission, hold, route, cache, relay)
            if cache.entry is not None:
                return await self._serve_hit(request, so_far, cache.entry.body)
            if plan is None or cache.lease is None:
                return await self._forward(request, so_far, raw, relay)
            return await self._lead(request, so_far, raw, relay, plan, cache)
        finally:
            outcome = request[OUTCOME] = _outcome(asked, admission, hold, route, cache, relay)
            self.limits.settle(admission, outcome)  # real usage back into the buckets, in its own task
            if hold is not None:  # commit the usage (or release) even when the client hung up
                await asyncio.shield(self.budget.settle(hold, outcome.usage, cache.status == "HIT"))

    async def _lead(
        self, request: web.Request, so_far: Outcome, raw: bytes, relay: Relay, plan: Plan, cache: CacheOutcome
    ) -> web.StreamResponse:
        """Produce the answer for an identical request's waiters too, and store it."""
        asked, lease = so_far.request, cache.lease
        assert lease is not None
        tap = asked.protocol.assembler(self.cache.config.max_entry_bytes) if asked.stream else None
        status, answer = 0, None
        try:
            response = await self._forward(request, so_far, raw, relay, tap)
            if relay.target is not None and relay.target.name == so_far.model:  # not a fallback's answer
                if tap is not None:
                    assembled = tap.answer()
                    status, answer = (200, orjson.dumps(assembled)) if assembled else (0, None)
                elif isinstance(response, web.Response) and isinstance(response.body, bytes):
                    status, answer = response.status, response.body
            return response
        finally:
            await asyncio.shield(self.cache.settle(plan, lease, status, answer))

    async def _serve_hit(self, request: web.Request, so_far: Outcome, body: bytes) -> web.StreamResponse:
        asked = so_far.request
        if not asked.stream:
            return web.Response(body=body, content_type="application/json", headers=response_headers(so_far))
        response = web.StreamResponse(headers={**_SSE_HEADERS, **response_headers(so_far)})
        await response.prepare(request)
        piece = self.cache.config.replay_chunk_chars
        for event in asked.protocol.replay(orjson.loads(body), asked.client_wants_usage, piece):
            await response.write(event)
        request[DELIVERED] = True
        await _finish(response)
        return response

    async def _forward(
        self, request: web.Request, so_far: Outcome, raw: bytes, relay: Relay, tap: Assembler | None = None
    ) -> web.StreamResponse:
        """Send to the provider (with retries and the target's fallbacks) and relay the answer."""
        asked, route = so_far.request, so_far.route
        assert route is not None
        call = _call(asked, raw, self._keyed(asked, route.target))
        sent = time.perf_counter()
        first, operation = route.target, asked.protocol.operation
        with self.telemetry.provider_span(first.provider.name, first.upstream_model, operation) as span:
            try:
                if self.batcher.eligible(asked):
                    target, reply, relay.batch = await self.batcher.submit(asked, route.target, call)
                else:
                    target, reply = await self.upstream.call(call, self.catalog.chain(route.target))
                self.router.answered(asked, route, target)
                self.limits.observe(target.provider.name, reply.headers)
                relay.target = target
                headers = response_headers(replace(so_far, model=target.name, batch=relay.batch))
                clean = redactor(target.provider.secrets)
                if reply.chunks is not None:
                    response = await self._relay_stream(request, asked, reply, tap, clean, headers, relay)
                else:
                    response = self._respond(reply, clean, headers)
                    relay.status = reply.status
                    if reply.status < 400:
                        relay.usage = _usage(asked, cast(bytes, response.body))  # _respond() gives it bytes
            finally:
                relay.upstream_seconds = time.perf_counter() - sent
                _annotate(span, relay)
            return response

    def _keyed(self, asked: Request, target: Target) -> Body:
        """The body with a ``prompt_cache_key`` for its shared prefix, when the policy is on and every
        provider the call may go to (the target and its fallbacks) takes one; else the body as sent."""
        if not self.cache.config.prompt_cache_key:
            return asked.body
        kinds = {t.provider.config.type for t in self.catalog.chain(target)}
        kind = kinds.pop() if len(kinds) == 1 else ""
        scope = self.cache.scope_of(asked)
        return with_prompt_cache_key(self.cache.config, kind, asked.endpoint, asked.body, scope)

    async def passthrough(self, request: web.Request, path: str) -> web.StreamResponse:
        """Any other ``/v1/*`` route, relayed as is to the default provider (files, batches, responses...)."""
        self.auth.identify(request.headers)
        provider = self.catalog.default_provider
        if provider is None:
            raise GatewayError(
                "No provider is configured for passthrough routes.", status=404, code="not_found"
            )
        raw = await request.read()
        headers = {h: request.headers[h] for h in _PASSTHROUGH_HEADERS if h in request.headers}
        query = request.query_string
        reply = await send_once(provider, ProviderRequest(path, raw, True, request.method, headers, query))
        clean = redactor(provider.secrets)
        if reply.chunks is None:
            return self._respond(reply, clean)
        headers = {**_reply_headers(reply, clean), "X-Request-Id": request[REQUEST_ID]}
        response = web.StreamResponse(status=reply.status, headers=headers)
        sse = headers["Content-Type"].startswith("text/event-stream")
        try:
            await response.prepare(request)
            if sse:  # whole events, so a secret cannot straddle two writes
                async for batch in event_batches(reply.chunks):
                    await response.write(b"".join(clean.data(event) + b"\n\n" for event in batch))
            else:
                held = Holdback(clean)
                async for chunk in reply.chunks:
                    if ready := held.feed(chunk):
                        await response.write(ready)
                await response.write(held.end())
            request[DELIVERED] = True
        finally:
            await reply.close()
        await _finish(response)
        return response

    async def _admit(self, request: web.Request, protocol: Protocol) -> tuple[Request, bytes]:
        identity = self.auth.identify(request.headers)
        raw = await request.read()
        body = parse_json(raw)
        protocol.validate(body)
        asked = build_context(request[REQUEST_ID], protocol, identity, request.headers, body)
        if protocol.provider_type is not None:  # a native protocol: its headers and query go along
            query = request.query_string if protocol.keeps_query else ""
            asked = replace(asked, upstream_headers=protocol.upstream_headers(request.headers), query=query)
        return asked, raw

    def _respond(
        self, reply: UpstreamReply, clean: Redactor, own: dict[str, str] | None = None
    ) -> web.Response:
        headers = _reply_headers(reply, clean)
        if reply.status >= 400:
            data = relayed_error(reply, clean)
            headers["Content-Type"] = "application/json"
        else:
            data = clean.data(reply.body)
        headers.update(own or {})
        return web.Response(status=reply.status, body=data, headers=headers)

    async def _relay_stream(
        self,
        request: web.Request,
        asked: Request,
        reply: UpstreamReply,
        tap: Assembler | None,
        clean: Redactor,
        headers: dict[str, str],
        relay: Relay,
    ) -> web.StreamResponse:
        watcher = UsageWatcher(asked.protocol, asked.client_wants_usage)
        response = web.StreamResponse(status=200, headers={**_SSE_HEADERS, **headers})
        assert reply.chunks is not None
        await response.prepare(request)
        try:
            async for batch in event_batches(reply.chunks):
                out = []
                for event in batch:
                    event = clean.data(event)  # before anything reads it: the cache stores what it sees
                    data = event_data(event)
                    if data is not None:
                        if tap is not None:
                            tap.on_data(data)
                        if not watcher.keep(data):
                            continue
                    out.append(event)
                if out:
                    await response.write(b"\n\n".join(out) + b"\n\n")
                if watcher.finished:
                    request[DELIVERED] = True  # the last event is out: a hang-up from now on is not a failure
            if not watcher.finished:
                raise UpstreamError("The provider closed the stream before it was complete.")
        except (TimeoutError, GatewayError, aiohttp.ClientError) as exc:
            error = exc if isinstance(exc, GatewayError) else _stream_failure(exc)
            relay.status = error.status
            model = relay.target.name if relay.target is not None else None
            log.warning("stream_failed", request_id=asked.request_id, model=model, error=error.message)
            await response.write(asked.protocol.stream_error(error))
        finally:
            relay.usage = watcher.usage_or_count(asked.prompt_estimate)
            await reply.close()
        await _finish(response)
        return response


def _call(asked: Request, raw: bytes, body: Body) -> Call:
    """The upstream call for ``body`` (the client's, or with the gateway's ``prompt_cache_key``).
    Streams always ask for usage (tokens must be accounted); what the gateway asked for on the
    client's behalf is removed again on the way back (the adapter's ``drop``)."""
    body = (asked.protocol.stream_request(body) if asked.stream else None) or body
    sent = raw if body is asked.body else orjson.dumps(body)
    path, headers, query = asked.protocol.upstream_path, asked.upstream_headers, asked.query
    return Call(asked.request_id, asked.stream, path, body, sent, headers, query)


def _annotate(span: Span, relay: Relay) -> None:
    """The provider call's span: the model that answered and what it used (a failure: what is known)."""
    usage, target = relay.usage, relay.target
    span.annotate(
        response_model=target.upstream_model if target is not None else None,
        input_tokens=usage.prompt_tokens if usage else None,
        output_tokens=usage.completion_tokens if usage else None,
        status=relay.status if target is not None else None,
    )


def _usage(asked: Request, answer: bytes) -> Usage | None:
    """The answer's usage; else its text counted; None for a body that is not an answer."""
    try:
        parsed = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    return asked.protocol.usage(parsed) or asked.protocol.counted(asked.prompt_estimate, parsed)


def _outcome(
    asked: Request,
    admission: Admission | None,
    hold: Hold | None,
    route: Route | None,
    cache: CacheOutcome,
    relay: Relay,
) -> Outcome:
    """Everything the stages returned, as one record (the model is the one that answered, if any)."""
    target = relay.target
    model = target.name if target is not None else route.model if route is not None else asked.requested_model
    return Outcome(
        request=asked,
        model=model,
        route=route,
        provider=target.provider.name if target is not None else "",
        status=relay.status,
        standing=hold.standing if hold is not None else NO_BUDGET,
        cache=cache,
        batch=relay.batch,
        usage=cache.usage if cache.status == "HIT" else relay.usage,
        upstream_seconds=relay.upstream_seconds,
        budget_remaining=hold.remaining if hold is not None else None,
        limit_headers=tuple(admission.headers.items()) if admission is not None else (),
    )


def extra_headers(outcome: Outcome) -> dict[str, str]:
    """The headers that describe a stage's result, on answers and errors alike."""
    headers = dict(outcome.limit_headers)  # x-ratelimit-*: the remaining figures
    if outcome.budget_remaining is not None:
        headers[BUDGET_HEADER] = str(outcome.budget_remaining)
    if outcome.cache.entry is not None:
        headers["X-Cache-Age"] = str(int(outcome.cache.entry.age))
    batch = outcome.batch
    if batch is not None and batch.batch_id is not None and not batch.fallback:
        headers["X-Gateway-Batch"] = f"{batch.batch_id};size={batch.size}"
    return headers


def response_headers(outcome: Outcome) -> dict[str, str]:
    """The gateway's own answer headers (the contract in the README), with any control character
    dropped: one in an echoed value would break the response head."""
    headers = {
        "X-Request-Id": outcome.request.request_id,
        "X-Gateway-Model": outcome.model,
        "X-Gateway-Route-Reason": outcome.route_reason,
        "X-Cache": outcome.cache.status,
        **extra_headers(outcome),
    }
    return {name: value.translate(_NO_CONTROL) for name, value in headers.items()}


def _reply_headers(reply: UpstreamReply, clean: Redactor) -> dict[str, str]:
    """The provider headers a client sees: only those the provider kept (its allow-list, e.g.
    ``openai._RELAYED``), under the gateway's names, every value redacted."""
    headers = {_RELAYED_AS.get(k, k): clean.text(v) for k, v in reply.headers.items()}
    headers.setdefault("Content-Type", "application/json")
    return headers


async def _finish(response: web.StreamResponse) -> None:
    """End a streamed answer; a client that hung up after the last byte is not an error."""
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()


def _stream_failure(exc: BaseException) -> GatewayError:
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout("The provider stopped sending in the middle of the stream.")
    return UpstreamError(f"The provider's stream broke: {type(exc).__name__}.")
