"""The admin API (``/admin/*``): an aiohttp sub-app whose one middleware checks the admin key.

Each concern is one module with its ``ROUTES`` (paths relative to ``/admin``); handlers read the services
through ``request.config_dict`` (gateway/appkeys.py). The parent app's middleware turns every failure
into an OpenAI-shaped error and records each call once.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.admin import agents, budgets, cache, routing
from gateway.appkeys import POLICY
from gateway.errors import NotFound
from gateway.identity import check_admin


def create_admin_app() -> web.Application:
    """The sub-app to mount at ``/admin``; every route of it, unknown ones too, needs the admin key first."""
    app = web.Application(middlewares=[require_admin_key])
    for module in (cache, routing, budgets, agents):
        app.router.add_routes(module.ROUTES)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


@web.middleware
async def require_admin_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    check_admin(request.headers, request.config_dict[POLICY].server.admin_key)
    return await handler(request)


async def not_found(request: web.Request) -> web.Response:
    raise NotFound("Unknown admin route.")
