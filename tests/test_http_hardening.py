"""HTTP below the app (gateway/connection.py): malformed requests and slow clients, over raw sockets.

The gateway runs here as a worker runs it (``worker.app_runner``), in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from gateway import connection
from gateway.policy import Policy
from gateway.server import create_app
from gateway.worker import app_runner
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream

Start = Callable[..., Awaitable[int]]
CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
AUTH = b"Authorization: Bearer " + GATEWAY_KEY.encode() + b"\r\n"
GUARD_S = 10.0
"""How long a test waits for what must happen; never reached when the gateway behaves."""


@pytest.fixture
async def start(fake_upstream: FakeUpstream) -> AsyncIterator[Start]:
    """Start a gateway on a free port with these ``server`` policy keys; returns the port."""
    runners: list[web.AppRunner] = []

    async def start(**server: Any) -> int:
        policy = Policy.model_validate(base_policy(fake_upstream.url, server=server))  # type: ignore[attr-defined]
        runner = app_runner(create_app(policy), policy.server)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The events logged while the test runs after the gateway's start, whatever an earlier test
    configured (cached loggers ignore capture)."""
    with capture_logs() as captured:
        monkeypatch.setattr(connection, "log", structlog.get_logger("gateway.connection"))
        yield captured


def logged(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events if e["event"] != "started"]


async def until_closed(port: int, *parts: bytes, pause_s: float = 0.0) -> bytes:
    """Send ``parts`` (``pause_s`` apart), then read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, part in enumerate(parts):
            if i and pause_s:
                await asyncio.sleep(pause_s)
            writer.write(part)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), GUARD_S)  # b"" or the answer, then EOF
    finally:
        writer.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, orjson.loads(body)


def assert_openai_error(raw: bytes, status: int, code: str) -> dict[str, Any]:
    got, headers, body = parse(raw)
    assert got == status, raw
    assert headers["content-type"].startswith("application/json")
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error  # type: ignore[no-any-return]


def post(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n" + AUTH + headers + b"\r\n" + body


MALFORMED = {
    "oversized header line": b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    "control byte in a header": b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Key: "
    + GATEWAY_KEY.encode()
    + b"\x01\r\n\r\n",
    "bad chunk size": post(b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
    "garbage request line": b"HELLO THERE\r\n\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_http_gets_json_and_one_log_line(
    start: Start, events: list[dict[str, Any]], caplog: pytest.LogCaptureFixture, name: str
) -> None:
    port = await start()
    error = assert_openai_error(await until_closed(port, MALFORMED[name]), 400, "invalid_http")
    assert error["message"].startswith("The request is not valid HTTP: ")
    assert GATEWAY_KEY not in error["message"]  # aiohttp quotes the bytes it rejects; they stay out
    assert logged(events) == ["bad_http_request"]
    assert GATEWAY_KEY not in str(events)
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"


@pytest.mark.parametrize(
    ("headers", "parts"),
    [
        (b"Transfer-Encoding: chunked\r\n", [b"5\r\n" + CHAT[:5] + b"\r\n", b"zz\r\n"]),
        (b"Content-Encoding: gzip\r\nContent-Length: 20\r\n", [b"\x1f\x8b not gzip at all..."]),
    ],
    ids=["bad chunk size after the head", "bad compression"],
)
async def test_a_body_that_breaks_off_gets_400_not_a_hang(
    start: Start, caplog: pytest.LogCaptureFixture, headers: bytes, parts: list[bytes]
) -> None:
    port = await start()
    raw = await until_closed(port, post(headers), *parts, pause_s=0.05)
    error = assert_openai_error(raw, 400, "invalid_http")
    assert error["message"].startswith("The request body could not be read: ")
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"


async def test_a_gzip_body_still_works(start: Start) -> None:
    port = await start()
    body = gzip.compress(CHAT)
    headers = b"Content-Encoding: gzip\r\nConnection: close\r\nContent-Length: %d\r\n" % len(body)
    status, _, answer = parse(await until_closed(port, post(headers, body)))
    assert status == 200 and answer["object"] == "chat.completion"


@pytest.mark.parametrize(
    "parts",
    [
        [b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Half"],
        [],
        [b"GET /hea", b"lthz HTTP/1.1\r\n", b"Host: gw\r\n"],
    ],
    ids=["half a head", "nothing", "a head dripping in"],
)
async def test_a_slow_request_head_is_answered_408_and_closed(
    start: Start, events: list[dict[str, Any]], parts: list[bytes]
) -> None:
    port = await start(header_timeout_s=0.3)
    raw = await until_closed(port, *parts, pause_s=0.1)  # returns only once the server has closed it
    if raw:  # the answer arrives unless the kernel reset the connection first
        assert_openai_error(raw, 408, "request_timeout")
    assert logged(events) == ["header_timeout"]


async def test_many_slow_clients_are_all_dropped(start: Start) -> None:
    port = await start(header_timeout_s=0.3)
    half = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
    answers = await asyncio.gather(*(until_closed(port, half) for _ in range(100)))  # each one closed
    assert all(raw == b"" or raw.startswith(b"HTTP/1.1 408 ") for raw in answers)


async def test_the_head_deadline_does_not_cut_a_slow_body_or_answer(
    start: Start, fake_upstream: FakeUpstream
) -> None:
    port = await start(header_timeout_s=0.2)
    fake_upstream.latency_s = 0.5  # the answer takes longer than the head deadline too
    headers = b"Connection: close\r\nContent-Length: %d\r\n" % len(CHAT)
    raw = await until_closed(port, post(headers), CHAT[:10], CHAT[10:], pause_s=0.3)
    status, _, answer = parse(raw)
    assert status == 200 and answer["object"] == "chat.completion"


async def test_keep_alive_idle_timeout(start: Start) -> None:
    """A kept-alive connection may idle past the head deadline (it starts with the next request's first
    byte) and serve again; idle past ``keepalive_timeout_s`` the server closes it."""
    port = await start(header_timeout_s=0.2, keepalive_timeout_s=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ping = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"
    try:
        for _ in range(2):
            writer.write(ping)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(parse(head + b"{}")[1]["content-length"])
            await reader.readexactly(length)
            await asyncio.sleep(0.4)  # longer than the head deadline, shorter than the keep-alive
        assert await asyncio.wait_for(reader.read(), GUARD_S) == b""  # then the server closes it
    finally:
        writer.close()


def test_the_timeouts_are_policy_keys() -> None:
    server = Policy.model_validate({"server": {"header_timeout_s": 2.5, "keepalive_timeout_s": 30}}).server
    assert (server.header_timeout_s, server.keepalive_timeout_s) == (2.5, 30)
    defaults = Policy.model_validate({}).server
    assert (defaults.header_timeout_s, defaults.keepalive_timeout_s) == (10, 75)
    with pytest.raises(ValueError, match="header_timeout_s"):
        Policy.model_validate({"server": {"header_timeout_s": 0}})
