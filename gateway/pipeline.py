"""The one place that orders the stages of a request.

    identify → validate → estimate tokens → budget reserve → route → cache lookup (singleflight)
      → batcher or upstream (retries, fallbacks) → relay (JSON or SSE) → cache store → budget commit
      → metrics, request log line and ledger record (``server.observe``)

Each stage lives in its own module (identity, validation, tokens, budget, router, cache, batcher,
upstream, sse); this file only calls them in order and carries the context.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import orjson
from aiohttp import web

from gateway.batcher import Batcher
from gateway.budget import BudgetManager
from gateway.cache import CacheEntry, LLMCache, Plan, StreamAssembler, replay
from gateway.context import RequestContext, Usage
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout, sse_error_event
from gateway.identity import Authenticator, build_context
from gateway.limits import Limiter
from gateway.logs import get_logger
from gateway.metrics import LabelLimiter
from gateway.policy import Policy
from gateway.providers import ProviderRequest, UpstreamReply
from gateway.redact import Holdback, Redactor, redactor
from gateway.router import Router
from gateway.sse import StreamTap, UsageWatcher, event_batches, event_data
from gateway.tokens import counted_usage, estimate_prompt
from gateway.upstream import ModelCatalog, Target, Upstream, relayed_error, send_once
from gateway.validation import CHAT, COMPLETIONS, parse_json, validate

log = get_logger("gateway.pipeline")

CTX = web.RequestKey("ctx", RequestContext)
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
    ) -> None:
        self.policy = policy
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

    async def handle(self, request: web.Request, endpoint: str, path: str) -> web.StreamResponse:
        ctx, raw = await self._admit(request, endpoint)
        ctx.prompt_estimate = estimate_prompt(endpoint, ctx.body)
        admission = await self.limits.admit(ctx, request.headers)  # rate limits and the brake
        hold = None
        try:
            hold = await self.budget.reserve(ctx)
            target = self.router.route(ctx)
            ctx.model = target.name
            plan = self.cache.plan(ctx)
            if plan is None:
                return await self._forward(request, ctx, raw, path, target)
            return await self._through_cache(request, ctx, raw, path, target, plan)
        finally:
            self.limits.settle(admission, ctx)  # real usage back into the buckets, in its own task
            if hold is not None:  # commit the usage (or release) even when the client hung up
                await asyncio.shield(self.budget.settle(hold, ctx))

    async def _through_cache(
        self, request: web.Request, ctx: RequestContext, raw: bytes, path: str, target: Target, plan: Plan
    ) -> web.StreamResponse:
        """Serve a stored answer, wait for an identical request in flight, or lead and store the answer."""
        outcome = await self.cache.fetch(ctx, plan)
        if outcome is None:
            return await self._forward(request, ctx, raw, path, target)
        if isinstance(outcome, CacheEntry):
            return await self._serve_hit(request, ctx, outcome)
        tap = StreamAssembler(ctx.endpoint, self.cache.config.max_entry_bytes) if ctx.stream else None
        status, answer = 0, None
        try:
            response = await self._forward(request, ctx, raw, path, target, tap)
            if ctx.model == target.name:  # an answer from a fallback model is not this key's answer
                if tap is not None:
                    assembled = tap.answer()
                    status, answer = (200, orjson.dumps(assembled)) if assembled else (0, None)
                elif isinstance(response, web.Response) and isinstance(response.body, bytes):
                    status, answer = response.status, response.body
            return response
        finally:
            await asyncio.shield(self.cache.settle(plan, outcome, status, answer))

    async def _serve_hit(
        self, request: web.Request, ctx: RequestContext, entry: CacheEntry
    ) -> web.StreamResponse:
        if not ctx.stream:
            return web.Response(
                body=entry.body, content_type="application/json", headers=response_headers(ctx)
            )
        response = web.StreamResponse(headers={**_SSE_HEADERS, **response_headers(ctx)})
        await response.prepare(request)
        piece = self.cache.config.replay_chunk_chars
        for event in replay(ctx.endpoint, orjson.loads(entry.body), ctx.client_wants_usage, piece):
            await response.write(event)
        request[DELIVERED] = True
        await _finish(response)
        return response

    async def _forward(
        self,
        request: web.Request,
        ctx: RequestContext,
        raw: bytes,
        path: str,
        target: Target,
        tap: StreamTap | None = None,
    ) -> web.StreamResponse:
        """Send to the provider (with retries and the target's fallbacks) and relay the answer."""
        raw = self._upstream_body(ctx, raw)
        sent = time.perf_counter()
        try:
            if self.batcher.eligible(ctx):
                target, reply = await self.batcher.submit(ctx, target, raw)
            else:
                target, reply = await self.upstream.call(ctx, self.catalog.chain(target), path, ctx.body, raw)
            self.router.answered(ctx, target)
            self.limits.observe(target.provider.name, reply.headers)
            ctx.model, ctx.provider = target.name, target.provider.name
            clean = redactor(target.provider.secrets)
            if reply.chunks is not None:
                return await self._relay_stream(request, ctx, reply, tap, clean)
            return self._respond(ctx, reply, clean)
        finally:
            ctx.upstream_seconds = time.perf_counter() - sent

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
            return self._respond(None, reply, clean)
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

    async def _admit(self, request: web.Request, endpoint: str) -> tuple[RequestContext, bytes]:
        identity = self.auth.identify(request.headers)
        raw = await request.read()
        body = parse_json(raw)
        validate(endpoint, body)
        ctx = build_context(request[REQUEST_ID], endpoint, identity, request.headers, body)
        ctx.stream = bool(body.get("stream"))
        options = body.get("stream_options")
        ctx.client_wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        ctx.requested_model = ctx.model = body["model"]
        request[CTX] = ctx
        return ctx, raw

    def _upstream_body(self, ctx: RequestContext, raw: bytes) -> bytes:
        """The bytes to send upstream. Streams always ask for usage (tokens must be accounted); the extra
        chunk is removed again on the way back when the client did not ask for it."""
        body = ctx.body
        if ctx.stream and ctx.endpoint in (CHAT, COMPLETIONS):
            options = body.get("stream_options") or {}
            if not ctx.client_wants_usage:
                ctx.body = body = {**body, "stream_options": {**options, "include_usage": True}}
                return orjson.dumps(body)
        return raw

    def _respond(self, ctx: RequestContext | None, reply: UpstreamReply, clean: Redactor) -> web.Response:
        headers = _reply_headers(reply, clean)
        if reply.status >= 400:
            data = relayed_error(reply, clean)
            headers["Content-Type"] = "application/json"
        else:
            data = clean.data(reply.body)
            if ctx is not None:
                ctx.usage = Usage.of(data) or counted_usage(ctx.prompt_estimate, data)
        if ctx is not None:
            ctx.status = reply.status
            headers.update(response_headers(ctx))
        return web.Response(status=reply.status, body=data, headers=headers)

    async def _relay_stream(
        self,
        request: web.Request,
        ctx: RequestContext,
        reply: UpstreamReply,
        tap: StreamTap | None,
        clean: Redactor,
    ) -> web.StreamResponse:
        watcher = UsageWatcher(ctx.client_wants_usage)
        response = web.StreamResponse(
            status=200,
            headers={**_SSE_HEADERS, **response_headers(ctx)},
        )
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
            ctx.status = error.status
            log.warning("stream_failed", request_id=ctx.request_id, model=ctx.model, error=error.message)
            await response.write(sse_error_event(error))
        finally:
            ctx.usage = watcher.usage_or_count(ctx.prompt_estimate)
            await reply.close()
        await _finish(response)
        return response


def response_headers(ctx: RequestContext) -> dict[str, str]:
    """The gateway's own answer headers (the contract in the README), with any control character
    dropped: one in an echoed value would break the response head."""
    headers = {
        "X-Request-Id": ctx.request_id,
        "X-Gateway-Model": ctx.model,
        "X-Gateway-Route-Reason": ctx.route_reason,
        "X-Cache": ctx.cache_status,
        **ctx.extra_headers,
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
