"""The aiohttp application: routes, the error-and-observation middleware, and resource lifecycle."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway import admin, metrics
from gateway.batcher import Batcher
from gateway.budget import BudgetManager
from gateway.cache import LLMCache
from gateway.connection import unreadable_body
from gateway.errors import GatewayError, from_http_exception
from gateway.identity import Authenticator, check_admin
from gateway.ledger import Finished, RequestLedger, recording
from gateway.logs import get_logger
from gateway.metrics import LabelLimiter
from gateway.pipeline import CTX, DELIVERED, REQUEST_ID, Pipeline
from gateway.policy import Policy
from gateway.pricing import PriceBook
from gateway.prometheus import render
from gateway.providers import Provider, build_provider
from gateway.router import Router, RoutingLog
from gateway.store import Store, StoreError, open_store
from gateway.upstream import ModelCatalog, Upstream
from gateway.validation import CHAT, COMPLETIONS, EMBEDDINGS

log = get_logger("gateway.server")

POLICY = web.AppKey("policy", Policy)
STORE = web.AppKey("store", Store)
PIPELINE = web.AppKey("pipeline", Pipeline)
LEDGER = web.AppKey("ledger", RequestLedger)
_TOKEN = re.compile(r"[!-~]{1,128}")
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(policy: Policy, store: Store | None = None) -> web.Application:
    """Build the gateway for a policy. Long-lived resources start in ``cleanup_ctx``, not at import."""
    app = web.Application(middlewares=[observe], client_max_size=policy.server.max_body_bytes)
    app[POLICY] = policy
    app.cleanup_ctx.append(_resources(store))
    app.cleanup_ctx.append(_recording)  # after the pipeline starts, stopped before it closes
    app.router.add_post("/v1/chat/completions", _endpoint(CHAT, "chat/completions"))
    app.router.add_post("/v1/completions", _endpoint(COMPLETIONS, "completions"))
    app.router.add_post("/v1/embeddings", _endpoint(EMBEDDINGS, "embeddings"))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    app.router.add_route("*", "/v1/{tail:.+}", passthrough)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    admin.register(app)
    app.router.add_route("*", "/admin/{tail:.*}", admin_not_found)
    return app


def _resources(given: Store | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def resources(app: web.Application) -> AsyncIterator[None]:
        policy = app[POLICY]
        store = given or open_store(policy.store)
        app[STORE] = store
        started: list[Provider] = []
        try:
            providers = {name: build_provider(name, cfg) for name, cfg in policy.providers.items()}
            for provider in providers.values():
                await provider.start()
                started.append(provider)
            auth = Authenticator.for_policy(policy)
            if auth.open_mode:
                log.warning("open_mode", detail="auth.keys is empty: any client is accepted (local use only)")
            prices = PriceBook.from_policy(policy)
            catalog = ModelCatalog(policy, providers)
            cache = LLMCache(policy.cache, store, policy.store.prefix, prices)
            routing_log = RoutingLog(store, policy.routing.log_stream, policy.routing.log_maxlen)
            router = Router(policy.routing, catalog, routing_log, prices.cost)
            budget = BudgetManager.for_policy(policy, store, LabelLimiter(policy.metrics.max_agent_labels))
            upstream = Upstream()
            batcher = Batcher(policy.batching, upstream, catalog, cache.scope_of)
            app[PIPELINE] = Pipeline(policy, auth, catalog, upstream, cache, router, budget, batcher)
            await budget.start()
            log.info("started", store=store.kind, providers=list(providers), models=len(policy.models))
            yield
        finally:
            if PIPELINE in app:
                await app[PIPELINE].batcher.close()
                await app[PIPELINE].router.log.drain()
                await app[PIPELINE].budget.close()
            for provider in reversed(started):
                await provider.close()
            if given is None:
                await store.close()

    return resources


async def _recording(app: web.Application) -> AsyncIterator[None]:
    """The request ledger and the heartbeat (gateway/ledger)."""
    async with recording(app[POLICY], app[STORE], app[PIPELINE].cache.prices) as ledger:
        if ledger is not None:
            app[LEDGER] = ledger
        yield


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every failure into an OpenAI-shaped error and records one metric sample, log line and
    ledger record."""
    started = time.perf_counter()
    request[REQUEST_ID] = _request_id(request.headers.get("X-Request-Id", ""))
    metrics.IN_FLIGHT.inc()
    error = None
    try:
        response = await handler(request)
    except GatewayError as exc:
        error, response = exc.code, exc.response()
    except web.HTTPException as exc:
        failure = from_http_exception(exc)
        error, response = failure.code, failure.response()
    except RequestPayloadError as exc:
        failure = unreadable_body(request, exc)
        error, response = failure.code, failure.response()
        response.force_close()
    except asyncio.CancelledError:  # the client hung up; after the last event of a stream that is a success
        _record(request, 200 if request.get(DELIVERED) else 499, started)
        raise
    except Exception:
        log.exception("unhandled", request_id=request[REQUEST_ID], path=request.path)
        error = "internal_error"
        response = GatewayError("The gateway failed to handle this request.", code=error).response()
    finally:
        metrics.IN_FLIGHT.dec()
    if not response.prepared:
        response.headers["X-Request-Id"] = request[REQUEST_ID]
        ctx = request.get(CTX)
        for name, value in ctx.extra_headers.items() if ctx else ():
            response.headers.setdefault(name, value)  # errors too (e.g. X-Budget-Remaining-Tokens)
    _record(request, response.status, started, error)
    return response


def _request_id(given: str) -> str:
    """The client's id when it is a short printable-ASCII token (safe to echo in a header and to log),
    else a new one."""
    return given if _TOKEN.fullmatch(given) else uuid.uuid4().hex


def _record(request: web.Request, status: int, started: float, error: str | None = None) -> None:
    if request.path in _QUIET:
        return
    elapsed = time.perf_counter() - started
    ctx = request.get(CTX)
    ledger = request.app.get(LEDGER)
    if ledger is not None and request.path.startswith("/v1/"):
        done = Finished(request[REQUEST_ID], request.path, status, time.time() - elapsed, elapsed, error)
        ledger.record(done, ctx)
    endpoint = ctx.endpoint if ctx else ("passthrough" if request.path.startswith("/v1/") else "other")
    metrics.REQUESTS.labels(endpoint, str(status)).inc()
    metrics.REQUEST_SECONDS.labels(endpoint).observe(elapsed)
    if ctx is None:
        log.info(
            "request", request_id=request[REQUEST_ID], method=request.method, path=request.path, status=status
        )
        return
    metrics.OVERHEAD_SECONDS.labels(endpoint).observe(max(0.0, elapsed - ctx.upstream_seconds))
    usage = ctx.usage
    pipeline = request.app[PIPELINE]
    if usage is not None and ctx.cache_status != "HIT":
        metrics.TOKENS_USED.labels(pipeline.agent_label(ctx.agent), pipeline.model_label(ctx.model)).inc(
            usage.total
        )
    log.info(
        "request",
        request_id=ctx.request_id,
        agent=ctx.agent,
        team=ctx.team,
        endpoint=endpoint,
        model=ctx.model,
        requested_model=ctx.requested_model,
        status=status if ctx.status == 200 else ctx.status,
        latency_ms=round(elapsed * 1000, 2),
        upstream_ms=round(ctx.upstream_seconds * 1000, 2),
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        cache=ctx.cache_status,
        stream=ctx.stream,
    )


def _endpoint(endpoint: str, path: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await request.app[PIPELINE].handle(request, endpoint, path)

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


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    store_ok = await request.app[STORE].ping()
    providers_ok = bool(request.app[POLICY].providers)
    ready = store_ok and providers_ok
    body = {"status": "ready" if ready else "not ready", "store": store_ok, "providers": providers_ok}
    return web.json_response(body, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    data, content_type = render(metrics.derived)
    return web.Response(body=data, headers={"Content-Type": content_type})


async def admin_not_found(request: web.Request) -> web.Response:
    check_admin(request.headers, request.app[POLICY].server.admin_key)
    raise GatewayError("Unknown admin route.", status=404, type="invalid_request_error", code="not_found")


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


__all__ = ["PIPELINE", "POLICY", "STORE", "StoreError", "create_app"]
