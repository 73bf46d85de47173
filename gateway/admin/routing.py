"""``GET /admin/routing-log?limit=N``: the newest model routing decisions, newest first."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import InvalidRequest, Unavailable
from gateway.identity import check_admin
from gateway.server import PIPELINE, POLICY
from gateway.store import StoreError

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


def routes(app: web.Application) -> list[web.RouteDef]:
    return [web.get("/admin/routing-log", routing_log)]


async def routing_log(request: web.Request) -> web.Response:
    check_admin(request.headers, request.app[POLICY].server.admin_key)
    limit = _limit(request.query.get("limit"))
    router = request.app[PIPELINE].router
    try:
        entries = await router.log.read(limit)
    except StoreError as exc:
        raise Unavailable(f"The routing log could not be read: {exc}") from None
    return web.json_response({"object": "list", "stream": router.log.stream, "data": entries})


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(
            f"limit must be an integer from 1 to {MAX_LIMIT}.", param="limit", code="invalid_parameter"
        )
    return limit
