"""Operations: health, readiness, metrics (also summed across workers), logs, drain, cancellation."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from aiohttp import web

from tests.conftest import ADMIN_KEY, GATEWAY_KEY, PROVIDER_KEY, base_policy
from tests.fakes.background import BackgroundServer
from tests.fakes.redis_server import RedisServer
from tests.fakes.upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "hi"}]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def test_health_ready_metrics(gateway: str, client: openai.OpenAI) -> None:
    assert httpx.get(f"{gateway}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway}/readyz")
    assert ready.status_code == 200 and ready.json()["store"] is True
    before = metric(
        httpx.get(f"{gateway}/metrics").text, "gateway_requests_total", endpoint="chat.completions"
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    text = httpx.get(f"{gateway}/metrics").text
    assert metric(text, "gateway_requests_total", endpoint="chat.completions", code="200") >= 1
    assert metric(text, "gateway_requests_total", endpoint="chat.completions") == before + 1
    assert metric(text, "tokens_used_total", agent="agent-1", model="gpt-4o-mini") > 0
    for name in (
        "gateway_request_duration_seconds_bucket",
        "gateway_overhead_seconds_bucket",
        "gateway_upstream_duration_seconds_bucket",
    ):
        assert name in text
    assert PROVIDER_KEY not in text and GATEWAY_KEY not in text


def test_readyz_fails_when_redis_is_down(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    with RedisServer() as server:
        url = start_gateway(
            base_policy(fake_upstream.url, store={"url": server.url, "socket_timeout_s": 0.5})
        )  # type: ignore[attr-defined]
        assert httpx.get(f"{url}/readyz").status_code == 200
        server.stop()
        response = httpx.get(f"{url}/readyz")
        assert response.status_code == 503 and response.json()["store"] is False


class SlowUpstream:
    """An upstream that notices when the gateway hangs up on it (the cancellation we want)."""

    def __init__(self) -> None:
        self.disconnected = threading.Event()

    async def chat(self, request: web.Request) -> web.Response:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if request.transport is None or request.transport.is_closing():
                self.disconnected.set()
                return web.Response(status=499)
        return web.json_response({"choices": []})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app


def test_client_disconnect_cancels_upstream(start_gateway: Callable[..., str]) -> None:
    slow = SlowUpstream()
    with BackgroundServer(slow.app()) as upstream:
        url = start_gateway(base_policy(upstream.url))
        with pytest.raises(httpx.TimeoutException):
            httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES},
                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                timeout=0.3,
            )
        assert slow.disconnected.wait(3), "the upstream request must be cancelled when the client leaves"


# --- the real command, as operators run it (fixtures `serve`, `policy_file`: conftest.py) -----------------


def test_sigterm_drains_in_flight_requests(
    serve: Callable[..., tuple[subprocess.Popen[str], str]],
    policy_file: Callable[..., Path],
    fake_upstream: FakeUpstream,
) -> None:
    proc, url = serve(policy_file())
    fake_upstream.latency_s = 1.0
    result: dict[str, int] = {}

    def slow_call() -> None:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            timeout=10,
        )
        result["status"] = response.status_code

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.4)
    proc.send_signal(signal.SIGTERM)
    caller.join(10)
    assert result.get("status") == 200, "an in-flight request must finish during the drain"
    assert proc.wait(10) == 0


def test_logs_one_json_line_per_request_without_secrets(
    serve: Callable[..., tuple[subprocess.Popen[str], str]], policy_file: Callable[..., Path]
) -> None:
    proc, url = serve(policy_file())
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "X-Task-Type": "refactor"}
    for _ in range(3):
        httpx.post(
            f"{url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES}, headers=headers
        )
    httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"Authorization": "Bearer sk-wrong-key-123456"},
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    text = Path(proc.log_path).read_text()  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["event"] == "request"]
    assert len(requests) == 4
    ok = [r for r in requests if r["status"] == 200]
    assert len(ok) == 3 and len({r["request_id"] for r in ok}) == 3
    assert all(r["agent"] == "agent-1" and r["model"] == "gpt-4o-mini" and r["prompt_tokens"] for r in ok)
    assert [r["status"] for r in requests if r["status"] != 200] == [401]
    for secret in (PROVIDER_KEY, GATEWAY_KEY, "sk-wrong-key-123456", ADMIN_KEY):
        assert secret not in text


def test_the_served_gateway_answers_bad_and_slow_http_with_json(
    serve: Callable[..., tuple[subprocess.Popen[str], str]], policy_file: Callable[..., Path]
) -> None:
    """What the worker serves (not only the app): a malformed request and a client that never finishes
    its request head each get a JSON error and one log line; ordinary requests are unaffected."""
    proc, url = serve(policy_file(server={"header_timeout_s": 0.5}))
    port = int(url.rsplit(":", 1)[1])

    def exchange(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(data)
            received = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                received += chunk
            return received

    bad = exchange(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Bad: \x01\r\n\r\n")
    slow = exchange(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")
    assert bad.startswith(b"HTTP/1.0 400") and b'"code":"invalid_http"' in bad
    assert slow.startswith(b"HTTP/1.1 408") and b'"code":"request_timeout"' in slow
    assert httpx.get(f"{url}/healthz").status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    text = Path(proc.log_path).read_text()  # type: ignore[attr-defined]
    assert "Traceback" not in text
    events = [json.loads(line)["event"] for line in text.splitlines()]  # every line is JSON
    assert events.count("bad_http_request") == 1 and events.count("header_timeout") == 1


def test_workers_share_metrics_through_redis_policy(
    serve: Callable[..., tuple[subprocess.Popen[str], str]],
    policy_file: Callable[..., Path],
    redis_url: str,
) -> None:
    proc, url = serve(policy_file(store={"url": redis_url}), "--workers", "2")
    with httpx.Client() as http:
        for _ in range(20):
            http.post(
                f"{url}/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES},
                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            )
    # Every scrape, whichever worker answers it, reports the sum over both workers.
    values = set()
    for _ in range(8):
        with httpx.Client() as fresh:  # new connection: the kernel may pick either worker
            text = fresh.get(f"{url}/metrics").text
        values.add(metric(text, "gateway_requests_total", endpoint="chat.completions", code="200"))
    assert values == {20.0}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
