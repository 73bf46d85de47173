"""The runaway brake: ``GET /admin/agents/paused`` (every paused agent, why and since when) and
``POST /admin/agents/{agent}/resume`` (lift its pause; idempotent: ``resumed`` says whether it was paused)."""

from __future__ import annotations

from aiohttp import web

from gateway.appkeys import PIPELINE
from gateway.errors import Unavailable
from gateway.limits.brake import Brake
from gateway.store import StoreError


def brake_of(request: web.Request) -> Brake:
    return request.config_dict[PIPELINE].limits.brake


async def paused_agents(request: web.Request) -> web.Response:
    return web.json_response({"paused": await paused_or_unavailable(brake_of(request))})


async def resume_agent(request: web.Request) -> web.Response:
    agent = request.match_info["agent"]
    try:
        lifted = await brake_of(request).resume(agent)
    except StoreError as exc:
        raise Unavailable(f"The rate-limit store could not be reached: {exc}") from None
    return web.json_response({"agent": agent, "resumed": lifted})


async def paused_or_unavailable(brake: Brake) -> dict[str, dict[str, object]]:
    try:
        return await brake.paused()
    except StoreError as exc:
        raise Unavailable(f"The rate-limit store could not be reached: {exc}") from None


ROUTES = [
    web.get("/agents/paused", paused_agents),
    web.post("/agents/{agent}/resume", resume_agent),
]
