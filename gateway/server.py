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
from gateway.appkeys import BUDGET, CACHE, LEDGER, PIPELINE, POLICY, ROUTING_LOG, STORE
from gateway.connection import unreadable_body
from gateway.errors import GatewayError, from_http_exception
from gateway.ledger import Finished
from gateway.logs import get_logger
from gateway.pipeline import CTX, DELIVERED, REQUEST_ID, Pipeline
from gateway.policy import Policy
from gateway.prometheus import render
from gateway.services import Services
from gateway.startup import NO_KEY, missing_keys
from gateway.store import Store
from gateway.validation import CHAT, COMPLETIONS, EMBEDDINGS

log = get_logger("gateway.server")

_TOKEN = re.compile(r"[!-~]{1,128}")
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(policy: Policy, store: Store | None = None) -> web.Application:
    """Build the gateway for a policy. Its services start in ``cleanup_ctx`` (gateway/services.py), not at
    import; ``store``, when given, is the caller's to close."""
    app = web.Application(middlewares=[observe], client_max_size=policy.server.max_body_bytes)
    app[POLICY] = policy
    app.cleanup_ctx.append(_services(store))
    app.router.add_post("/v1/chat/completions", _endpoint(CHAT, "chat/completions"))
    app.router.add_post("/v1/completions", _endpoint(COMPLETIONS, "completions"))
    app.router.add_post("/v1/embeddings", _endpoint(EMBEDDINGS, "embeddings"))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    app.router.add_route("*", "/v1/{tail:.+}", passthrough)
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
            yield

    return services


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
    if pipeline.catalog.get(name) is None and name not in pipeline.router.aliases:
        raise GatewayError(
            f"The model '{name}' does not exist on this gateway.",
            status=404,
            type="invalid_request_error",
            code="model_not_found",
            param="model",
        )
    return web.json_response(_model_object(name, pipeline), dumps=_dumps)


def _model_object(name: str, pipeline: Pipeline) -> dict[str, object]:
    config = pipeline.catalog.get(name)
    owner = config.provider if config else "gateway"
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


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
