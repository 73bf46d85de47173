"""OpenAI-shaped errors: every failure a client sees is ``{"error": {message, type, param, code}}``.

Stages raise :class:`GatewayError` (or a named subclass); the error middleware in ``server.py`` is the
one place that turns any exception into a response, so no traceback or HTML page ever escapes.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web


class GatewayError(Exception):
    """An error with the status, type and code the OpenAI SDK maps to the right exception class."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.type = type or self.type
        self.code = code if code is not None else self.code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=orjson.dumps(self.body()),
            content_type="application/json",
            headers=self.headers,
        )


class InvalidRequest(GatewayError):
    status, type = 400, "invalid_request_error"


class Unauthorized(GatewayError):
    status, type, code = 401, "invalid_request_error", "invalid_api_key"


class Forbidden(GatewayError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(GatewayError):
    status, type, code = 404, "invalid_request_error", "not_found"


class PayloadTooLarge(GatewayError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class RateLimited(GatewayError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class UpstreamError(GatewayError):
    status, type, code = 502, "upstream_error", "bad_gateway"


class UpstreamTimeout(GatewayError):
    status, type, code = 504, "timeout", "upstream_timeout"


class Unavailable(GatewayError):
    status, type, code = 503, "server_error", "unavailable"


def from_http_exception(exc: web.HTTPException) -> GatewayError:
    """aiohttp's own 404/405/413... as OpenAI-shaped errors."""
    if exc.status == 404:
        return NotFound(f"Unknown route: {exc.reason}. See /v1/models for what this gateway serves.")
    if exc.status == 405:
        return GatewayError(
            "Method not allowed for this route.",
            status=405,
            type="invalid_request_error",
            code="method_not_allowed",
        )
    if exc.status == 413:
        return PayloadTooLarge("Request body is larger than this gateway accepts (server.max_body_bytes).")
    error_type = "invalid_request_error" if exc.status < 500 else "server_error"
    return GatewayError(exc.reason or "HTTP error", status=exc.status, type=error_type, code=None)
