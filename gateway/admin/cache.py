"""``DELETE /admin/cache``: drop every entry, one scope's (``?scope=team:a``) or one key's (``?key=``)."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.appkeys import CACHE
from gateway.errors import InvalidRequest

_SCOPE = re.compile(r"^(global|team:[^\s:]{1,128}|agent:[^\s:]{1,128}/[^\s:]{1,128})$")
_KEY = re.compile(r"^[0-9a-f]{64}$")


async def clear_cache(request: web.Request) -> web.Response:
    scope = request.query.get("scope")
    key = request.query.get("key")
    if scope is not None and not _SCOPE.match(scope):
        raise InvalidRequest("scope must be global, team:NAME or agent:TEAM/AGENT.", param="scope")
    if key is not None and not _KEY.match(key):
        raise InvalidRequest("key must be a cache key: 64 lowercase hex characters.", param="key")
    deleted = await request.config_dict[CACHE].clear(scope, key)
    return web.json_response({"deleted": deleted, "scope": scope, "key": key})


ROUTES = [web.delete("/cache", clear_cache)]
