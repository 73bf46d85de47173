"""One serving process: the event loop, the app, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import gc

from aiohttp import web

from gateway import logs
from gateway.policy import Policy


def run_worker(policy: Policy, host: str, port: int, reuse_port: bool = False) -> int:
    """Serve until SIGTERM/SIGINT; in-flight requests get ``server.drain_timeout_s`` to finish."""
    logs.configure(policy.logging.level, policy.logging.format)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        pass
    from gateway.server import create_app

    logs.get_logger("gateway.worker").info("listening", host=host, port=port)
    app = create_app(policy)
    app.on_startup.append(_freeze_startup_objects)
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=policy.server.drain_timeout_s,
        handler_cancellation=True,
        reuse_port=reuse_port or None,
        backlog=1024,
    )
    return 0


async def _freeze_startup_objects(app: web.Application) -> None:
    """Move everything built at start into the permanent generation: full collections then only walk
    what requests create, instead of stalling every request in flight for tens of milliseconds."""
    gc.collect()
    gc.freeze()
