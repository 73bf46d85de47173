"""``GET /admin/routing-log?limit=N``: the newest model routing decisions, newest first."""

from __future__ import annotations

from aiohttp import web

from gateway.appkeys import ROUTING_LOG
from gateway.errors import InvalidRequest, Unavailable
from gateway.store import StoreError

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


async def routing_log(request: web.Request) -> web.Response:
    limit = _limit(request.query.get("limit"))
    log = request.config_dict[ROUTING_LOG]
    try:
        entries = await log.read(limit)
    except StoreError as exc:
        raise Unavailable(f"The routing log could not be read: {exc}") from None
    return web.json_response({"object": "list", "stream": log.stream, "data": entries})


ROUTES = [web.get("/routing-log", routing_log)]


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
