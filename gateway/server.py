"""The aiohttp application: routes, the error-and-observation middleware, and the services' lifecycle."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway import metrics
from gateway.admin import create_admin_app
from gateway.appkeys import BUDGET, CACHE, LEDGER, PIPELINE, POLICY, ROUTING_LOG, STORE, TELEMETRY
from gateway.connection import unreadable_body
from gateway.errors import GatewayError, from_http_exception
from gateway.ledger import Finished
from gateway.ledger.record import provider_cache_saving
from gateway.logs import get_logger
from gateway.pipeline import DELIVERED, OUTCOME, REQUEST_ID, Pipeline, extra_headers
from gateway.policy import Policy
from gateway.prometheus import render
from gateway.protocols import PROTOCOLS, Protocol, Usage
from gateway.services import Services
from gateway.startup import NO_KEY, missing_keys
from gateway.store import Store
from gateway.telemetry import OFF, Span

log = get_logger("gateway.server")

_TOKEN = re.compile(r"[!-~]{1,128}")
_QUIET = frozenset({"/", "/healthz", "/readyz", "/metrics"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(policy: Policy, store: Store | None = None) -> web.Application:
    """Build the gateway for a policy. Its services start in ``cleanup_ctx`` (gateway/services.py), not at
    import; ``store``, when given, is the caller's to close."""
    app = web.Application(middlewares=[observe], client_max_size=policy.server.max_body_bytes)
    app[POLICY] = policy
    app.cleanup_ctx.append(_services(store))
    for route, protocol in PROTOCOLS.items():
        app.router.add_post(route, _endpoint(protocol))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    app.router.add_route("*", "/v1/{tail:.+}", passthrough)
    app.router.add_get("/", root)  # and HEAD /: the connectivity check Claude Code makes
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.add_subapp("/admin", create_admin_app())
    return app


def _services(given: Store | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def services(app: web.Application) -> AsyncIterator[None]:
        async with Services.open(app[POLICY], given) as running:
            app[STORE] = running.store
            app[PIPELINE] = running.pipeline
            app[CACHE] = running.cache
            app[ROUTING_LOG] = running.routing_log
            app[BUDGET] = running.budget
            app[LEDGER] = running.ledger
            app[TELEMETRY] = running.telemetry
            yield

    return services


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """:func:`_observe` inside the request's server span when tracing is on (its log line then carries
    the ``trace_id``); when it is off, one test and nothing else."""
    telemetry = request.config_dict.get(TELEMETRY, OFF)
    if not telemetry.enabled or request.path in _QUIET:
        return await _observe(request, handler)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    with telemetry.request_span(request.headers, route, request.method) as span:
        status = None
        try:
            response = await _observe(request, handler)
            status = response.status
            return response
        finally:  # also when the client hung up (as ``_record`` counts it)
            _annotate(span, request, status or (200 if request.get(DELIVERED) else 499))


async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every failure into an OpenAI-shaped error and records one metric sample, log line and
    ledger record."""
    started = time.perf_counter()
    request[REQUEST_ID] = _request_id(request.headers.get("X-Request-Id", ""))
    metrics.IN_FLIGHT.inc()
    error = None
    try:
        response = await handler(request)
    except GatewayError as exc:
        error, response = exc.code, _error_response(request, exc)
    except web.HTTPException as exc:
        failure = from_http_exception(exc)
        error, response = failure.code, _error_response(request, failure)
    except RequestPayloadError as exc:
        failure = unreadable_body(request, exc)
        error, response = failure.code, _error_response(request, failure)
        response.force_close()
    except asyncio.CancelledError:  # the client hung up; after the last event of a stream that is a success
        _record(request, 200 if request.get(DELIVERED) else 499, started)
        raise
    except Exception:
        log.exception("unhandled", request_id=request[REQUEST_ID], path=request.path)
        error = "internal_error"
        failure = GatewayError("The gateway failed to handle this request.", code=error)
        response = _error_response(request, failure)
    finally:
        metrics.IN_FLIGHT.dec()
    if not response.prepared:
        response.headers["X-Request-Id"] = request[REQUEST_ID]
        outcome = request.get(OUTCOME)
        for name, value in extra_headers(outcome).items() if outcome else ():
            response.headers.setdefault(name, value)  # errors too (e.g. X-Budget-Remaining-Tokens)
    _record(request, response.status, started, error)
    return response


def _error_response(request: web.Request, error: GatewayError) -> web.Response:
    """The error in the shape of the route's protocol (OpenAI's for every other route)."""
    protocol = PROTOCOLS.get(request.path)
    return protocol.error_response(error) if protocol is not None else error.response()


def _annotate(span: Span, request: web.Request, status: int) -> None:
    """The server span's attributes: who asked, and what the stages decided."""
    outcome = request.get(OUTCOME)
    if outcome is None:
        span.annotate(status=status)
        return
    usage, asked = outcome.usage, outcome.request
    span.annotate(
        status=status if outcome.status == 200 else outcome.status,
        response_model=outcome.model,
        input_tokens=usage.prompt_tokens if usage else None,
        output_tokens=usage.completion_tokens if usage else None,
        cache=outcome.cache.status,
        route_reason=outcome.route_reason,
        batch_id=outcome.batch.batch_id if outcome.batch is not None else None,
        budget_left=outcome.standing.budget_left,
        agent=asked.agent,
        team=asked.team,
    )


def _request_id(given: str) -> str:
    """The client's id when it is a short printable-ASCII token (safe to echo in a header and to log),
    else a new one."""
    return given if _TOKEN.fullmatch(given) else uuid.uuid4().hex


def _record(request: web.Request, status: int, started: float, error: str | None = None) -> None:
    if request.path in _QUIET:
        return
    elapsed = time.perf_counter() - started
    outcome = request.get(OUTCOME)
    ledger = request.app.get(LEDGER)
    if ledger is not None and request.path.startswith("/v1/"):
        done = Finished(request[REQUEST_ID], request.path, status, time.time() - elapsed, elapsed, error)
        ledger.record(done, outcome)
    if outcome is None:
        endpoint = "passthrough" if request.path.startswith("/v1/") else "other"
    else:
        endpoint = outcome.request.endpoint
    metrics.REQUESTS.labels(endpoint, str(status)).inc()
    metrics.REQUEST_SECONDS.labels(endpoint).observe(elapsed)
    if outcome is None:
        log.info(
            "request", request_id=request[REQUEST_ID], method=request.method, path=request.path, status=status
        )
        return
    metrics.OVERHEAD_SECONDS.labels(endpoint).observe(max(0.0, elapsed - outcome.upstream_seconds))
    usage, asked = outcome.usage, outcome.request
    pipeline = request.app[PIPELINE]
    if usage is not None and outcome.cache.status != "HIT":
        agent, model = pipeline.agent_label(asked.agent), pipeline.model_label(outcome.model)
        metrics.TOKENS_USED.labels(agent, model).inc(usage.total)
        if usage.cached_input_tokens or usage.cache_write_tokens:
            _count_provider_cache(request, model, outcome.model, usage)
    log.info(
        "request",
        request_id=asked.request_id,
        agent=asked.agent,
        team=asked.team,
        endpoint=endpoint,
        model=outcome.model,
        requested_model=asked.requested_model,
        status=status if outcome.status == 200 else outcome.status,
        latency_ms=round(elapsed * 1000, 2),
        upstream_ms=round(outcome.upstream_seconds * 1000, 2),
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        cache=outcome.cache.status,
        stream=asked.stream,
    )


def _count_provider_cache(request: web.Request, label: str, model: str, usage: Usage) -> None:
    """The provider's own prompt caching: tokens read and written, and the USD it saved."""
    metrics.PROVIDER_CACHE_TOKENS.labels("read", label).inc(usage.cached_input_tokens)
    metrics.PROVIDER_CACHE_TOKENS.labels("write", label).inc(usage.cache_write_tokens)
    saved = provider_cache_saving(request.app[CACHE].prices, model, usage)
    if saved is not None:
        metrics.PROVIDER_CACHE_SAVED.labels(label).inc(max(0.0, saved))


def _endpoint(protocol: Protocol) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await request.app[PIPELINE].handle(request, protocol)

    return handler


async def passthrough(request: web.Request) -> web.StreamResponse:
    return await request.app[PIPELINE].passthrough(request, request.match_info["tail"])


async def list_models(request: web.Request) -> web.Response:
    pipeline = request.app[PIPELINE]
    pipeline.auth.identify(request.headers)
    names = [*pipeline.catalog.names(), *pipeline.router.aliases]
    data = [_model_object(name, pipeline) for name in names]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


async def get_model(request: web.Request) -> web.Response:
    pipeline = request.app[PIPELINE]
    pipeline.auth.identify(request.headers)
    name = request.match_info["model"]
    if name not in pipeline.router.aliases:
        pipeline.catalog.resolve(name)  # a 404 model_not_found unless declared or served by the ``*`` entry
    return web.json_response(_model_object(name, pipeline), dumps=_dumps)


def _model_object(name: str, pipeline: Pipeline) -> dict[str, object]:
    config = pipeline.catalog.get(name)
    owner = config.provider if config else "gateway"
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


async def root(request: web.Request) -> web.Response:
    """200 for clients that check the base URL answers before they start (no key needed, nothing told)."""
    return web.json_response({"status": "ok"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when requests can be served: the store serves every key and has its scripts (a cluster
    with all slots, a master Sentinel knows), and a provider is configured; otherwise says what is wrong."""
    store_problems = await request.app[STORE].check()
    providers_ok = bool(request.app[POLICY].providers)
    missing = missing_keys(request.app[POLICY])  # reported; not ready only where a key is required
    problems = store_problems + ([] if providers_ok else ["no provider is configured"])
    problems += [f"provider '{name}' needs an API key" for name, required in missing.items() if required]
    ready = not problems
    body = {
        "status": "ready" if ready else "not ready",
        "store": not store_problems,
        "providers": providers_ok,
        "provider_keys": {name: NO_KEY for name in missing},
        "problems": problems,
    }
    return web.json_response(body, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    data, content_type = render(metrics.derived)
    return web.Response(body=data, headers={"Content-Type": content_type})


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


__all__ = ["create_app"]
