"""One serving process: the event loop, the app, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable

from aiohttp import web

from gateway import logs
from gateway.connection import GatewayRunner
from gateway.policy import Policy
from gateway.policy.core import ServerConfig


def run_worker(policy: Policy, host: str, port: int, reuse_port: bool = False) -> int:
    """Serve until SIGTERM/SIGINT; in-flight requests get ``server.drain_timeout_s`` to finish."""
    logs.configure(policy.logging.level, policy.logging.format)
    from gateway.server import create_app

    logs.get_logger("gateway.worker").info("listening", host=host, port=port)
    app = create_app(policy)
    app.on_startup.append(_freeze_startup_objects)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(app, policy, host, port, reuse_port))
    return 0


async def _serve(app: web.Application, policy: Policy, host: str, port: int, reuse_port: bool) -> None:
    """Listen until a stop signal, then drain: the listener closes, in-flight requests finish, the app
    cleans up; only then are leftover tasks cancelled (by the loop runner)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = app_runner(app, policy.server)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024, reuse_port=reuse_port or None).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def app_runner(app: web.Application, config: ServerConfig) -> GatewayRunner:
    """How a worker runs the app: connection deadlines, drain time, handlers cancelled when clients leave."""
    return GatewayRunner(
        app,
        header_timeout_s=config.header_timeout_s,
        keepalive_timeout=config.keepalive_timeout_s,
        shutdown_timeout=config.drain_timeout_s,
        handler_cancellation=True,
        access_log=None,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def _freeze_startup_objects(app: web.Application) -> None:
    """Move everything built at start into the permanent generation: full collections then only walk
    what requests create, instead of stalling every request in flight for tens of milliseconds."""
    gc.collect()
    gc.freeze()
