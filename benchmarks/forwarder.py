"""The bare forwarder: the floor for a proxy of this design (Python, aiohttp, uvloop, one worker).

It relays each POST's body to the upstream over one pooled ClientSession and the answer back, and does
nothing else: no parsing, no headers of its own, no logging. What the gateway spends beyond it is its
stages. A benchmark peer only (``python -m benchmarks --compare forwarder``), not part of the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from .processes import ManagedProcess, free_port, repo_env, wait_started

_RELAYED = ("Content-Type", "Authorization")
SESSION = web.AppKey("session", aiohttp.ClientSession)


def app(upstream: str) -> web.Application:
    application = web.Application()

    async def session(application: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        application[SESSION] = aiohttp.ClientSession(connector=connector)
        yield
        await application[SESSION].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {h: request.headers[h] for h in _RELAYED if h in request.headers}
        async with application[SESSION].request(
            request.method, upstream + request.path_qs, data=body, headers=headers
        ) as reply:
            answer = await reply.read()
            return web.Response(status=reply.status, body=answer, content_type=reply.content_type)

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    application.cleanup_ctx.append(session)
    application.router.add_get("/healthz", health)
    application.router.add_route("*", "/{tail:.*}", relay)
    return application


def start_forwarder(run_dir: Path, upstream_url: str) -> tuple[ManagedProcess, str]:
    """The forwarder on a free loopback port in front of ``upstream_url``; returns it and its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.forwarder", "--upstream", upstream_url, "--port", str(port)]
    proc = ManagedProcess("bare forwarder", argv, run_dir / "forwarder.log", repo_env())
    return wait_started(proc, port, "/healthz")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forwarder")
    parser.add_argument("--upstream", required=True, help="base URL to relay to (no /v1)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(app(args.upstream.rstrip("/")), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
