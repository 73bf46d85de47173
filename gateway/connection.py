"""HTTP connections, below the app: what a client gets before its request reaches a handler.

aiohttp answers a request it cannot parse (an oversized header line, a control byte in a header, a bad chunk
size) itself, with a plain-text page and a logged traceback, and waits for a request head as long as the
client likes. Here such a request gets an OpenAI-shaped JSON error and one log line, and a client that does
not send a whole request head within ``server.header_timeout_s`` gets a 408 and is disconnected, so slow
(slowloris) connections cannot pile up. Idle kept-alive connections close after ``server.keepalive_timeout_s``
(aiohttp's own timer).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from gateway.errors import GatewayError
from gateway.logs import get_logger

log = get_logger("gateway.connection")
_STATUS = re.compile(r"^\s*\d{3}, message:")  # how an aiohttp HttpProcessingError prints
_QUOTED = re.compile(r"\s*:?\s*b?['\"]")  # where aiohttp starts quoting what the client sent


class GatewayProtocol(RequestHandler):
    """aiohttp's connection protocol with a request-head deadline and JSON parse errors.

    The deadline starts when the connection opens, or on a kept-alive connection with the first byte of
    the next request, and ends when a whole request head is parsed (aiohttp counts those).
    """

    def __init__(self, manager: web.Server, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        reading = self._current_request
        super().data_received(data)
        failed = self._messages[-1][0] if self._messages else None
        if reading is not None and isinstance(failed, _ErrInfo) and not reading.content.is_eof():
            # The body being read is broken (a bad chunk size): aiohttp would leave the handler waiting.
            reading.content.set_exception(RequestPayloadError(_reason(failed.exc)))
        if self._request_count > self._answered:  # a request head is complete: it is being answered
            self._cancel_head_timer()
        elif data and self._head_timer is None:  # the first bytes of the next request on a kept-alive one
            self._arm_head_timer()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._answered += 1

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to an unparseable request (and to a handler failure), as OpenAI-shaped JSON."""
        if request.writer.output_size > 0:
            raise ConnectionError("The response has started; no error response can follow it.")
        request_id = uuid.uuid4().hex  # every answer carries one, this one too
        if isinstance(exc, HttpProcessingError):
            reason = _reason(exc)
            # A client speaking TLS or another protocol to this port fails on its first request line: quiet.
            quiet = self._request_count == 1 and isinstance(exc, BadHttpMethod)
            (log.debug if quiet else log.info)(
                "bad_http_request",
                request_id=request_id,
                status=status,
                error=type(exc).__name__,
                reason=reason,
                remote=request.remote,
            )
            error = GatewayError(
                f"The request is not valid HTTP: {reason}.",
                status=status,
                type="invalid_request_error",
                code="invalid_http",
            )
        else:
            log.error("unhandled", request_id=request_id, status=status, exc_info=exc)
            error = GatewayError(
                "The gateway failed to handle this request.", status=status, code="internal_error"
            )
        response = error.response()
        response.headers["X-Request-Id"] = request_id
        response.force_close()
        return response

    def _arm_head_timer(self) -> None:
        self._head_timer = self._loop.call_later(self._header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is None or self._request_count > self._answered:
            return
        log.info("header_timeout", timeout_s=self._header_timeout_s, remote=_peer(self.transport))
        body = orjson.dumps(
            GatewayError(
                f"The request head did not arrive within {self._header_timeout_s:g} s.",
                status=408,
                type="invalid_request_error",
                code="request_timeout",
            ).body()
        )
        head = (
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.force_close()


class GatewayServer(web.Server):
    """aiohttp's low-level server, making :class:`GatewayProtocol` connections."""

    def __init__(self, base: web.Server, header_timeout_s: float) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            **base._kwargs,  # what the app and runner configured (keep-alive, access log, handler_args)
        )
        self.header_timeout_s = header_timeout_s

    def __call__(self) -> GatewayProtocol:
        return GatewayProtocol(self, header_timeout_s=self.header_timeout_s, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An ``AppRunner`` whose connections have the request-head deadline and JSON parse errors."""

    def __init__(self, app: web.Application, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s

    async def _make_server(self) -> web.Server:
        return GatewayServer(await super()._make_server(), self._header_timeout_s)


def unreadable_body(request: web.BaseRequest, exc: RequestPayloadError) -> GatewayError:
    """The answer to a body that broke off mid-way (a bad chunk, bad compression). The body is marked
    finished, so aiohttp does not try to drain it after the answer (and log a traceback)."""
    request.content.feed_eof()
    return GatewayError(
        f"The request body could not be read: {_reason(exc)}.",
        status=400,
        type="invalid_request_error",
        code="invalid_http",
    )


def _reason(exc: BaseException) -> str:
    """What is wrong, without the client's bytes aiohttp quotes (they may hold a key)."""
    text = _STATUS.sub("", getattr(exc, "message", None) or str(exc)).strip()
    reason = _QUOTED.split(text.splitlines()[0], maxsplit=1)[0].rstrip(" :.") if text else ""
    return reason[:200] or type(exc).__name__


def _peer(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None
