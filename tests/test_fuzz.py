"""The whole HTTP surface under generated input: a live ``llm-gateway serve`` process, every route,
generated methods, headers and bodies (raw bytes on the wire, so nothing is cleaned up by a client
library on the way).

Whatever arrives, the gateway answers: never a 5xx unless the provider failed, every error is JSON in
the OpenAI shape, every header it sends is printable, it stays healthy, and no budget reservation is
left behind. The cases of the hardening issue are pinned as explicit examples.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_KEY, GATEWAY_KEY, PROVIDER_KEY
from tests.fakes.background import BackgroundServer
from tests.fakes.upstream import FakeUpstream
from tests.raw_http import RawResponse, request_bytes, send

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "250"))
TEAM_KEY = "gw-team-key-2"
"""A key that names a team but no agent."""

ROUTES: list[tuple[str, str]] = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/gpt-4o-mini"),
    ("GET", "/v1/models/no-such-model"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/resp_123"),
    ("POST", "/v1/no/such/route"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/admin/budgets"),
    ("POST", "/admin/budgets/s1/adjust"),
    ("POST", "/admin/budgets/s1/reset"),
    ("POST", "/admin/budgets/nope/adjust"),
    ("DELETE", "/admin/cache"),
    ("GET", "/admin/routing-log"),
    ("GET", "/admin/nothing-here"),
    ("GET", "/"),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
MODELS = ["gpt-4o-mini", "gpt-4.1", "auto", "text-embedding-3-small", "unknown-model", ""]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "fuzz me"}], "max_tokens": 4}
VALID = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": {"model": "gpt-4o-mini", "prompt": "fuzz me", "max_tokens": 4},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "fuzz me"},
    "/v1/responses": {"model": "gpt-4o-mini", "input": "fuzz me"},
    "/admin/budgets/s1/adjust": {"tokens": 10},
    "/admin/budgets/s1/reset": {"agent": "agent-1"},
}

# --- what to send ---------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
header_bytes = st.binary(max_size=24).filter(lambda b: b"\r" not in b and b"\n" not in b)


@st.composite
def bodies(draw: st.DrawFn, path: str) -> bytes:
    """A body for ``path``: a valid one with one field changed, a JSON value, or raw bytes."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "json", "bytes", "empty"]))
    base = VALID.get(path)
    if kind == "mutated" and base is not None:
        body: dict[str, Any] = dict(base)
        if draw(st.booleans()):
            body["model"] = draw(st.sampled_from(MODELS) | st.text(max_size=12))
        field_name = draw(
            st.sampled_from(
                [*base, "stream", "n", "temperature", "seed", "stream_options", "tools", "user", "extra"]
            )
        )
        body[field_name] = draw(json_values | st.sampled_from([True, 2.0, 10**20, -1, 0]))
        return json.dumps(body).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    return b""


@st.composite
def headers(draw: st.DrawFn, path: str) -> list[tuple[bytes, bytes]]:
    key = ADMIN_KEY if path.startswith("/admin") else GATEWAY_KEY
    auth = draw(
        st.sampled_from([key, key, key, TEAM_KEY, "", "wrong-key"]).map(lambda k: f"Bearer {k}".encode())
        | header_bytes.map(lambda b: b"Bearer " + b)
    )
    out = [(b"Authorization", auth), (b"Content-Type", b"application/json")]
    optional = {
        b"X-Agent-Id": st.sampled_from(["agent-1", "agent-2", "eng/ml", "a" * 200]) | header_text,
        b"X-Task-Type": st.sampled_from(["refactor", "test", "creative"]) | header_text,
        b"X-Priority": st.sampled_from(["P0", "P3", "p9"]) | header_text,
        b"X-Request-Id": header_text | header_bytes,
        b"X-Lines-Estimate": st.sampled_from(["10", "-1", "9" * 30]) | header_text,
        b"X-Batchable": st.sampled_from(["true", "maybe"]) | header_text,
        b"X-Sprint": st.sampled_from(["s1", "none"]) | header_text,
        b"Cache-Control": st.sampled_from(["no-cache", "no-store", "max-age=0", "max-age=" + "9" * 40])
        | header_text,
        b"api-key": header_text | header_bytes,
    }
    for name, values in optional.items():
        if draw(st.integers(0, 3)) == 0:
            value = draw(values)
            out.append((name, value if isinstance(value, bytes) else value.encode()))
    return out


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    method, path = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(METHODS))
    return method, path, draw(headers(path)), draw(bodies(path))


# --- the live gateway -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeUpstream, list[int]]]:
    """The fake provider, counting the 5xx answers it gives (a gateway 5xx must trace back to one)."""
    fake = FakeUpstream(expected_key=PROVIDER_KEY)
    failures: list[int] = []

    @web.middleware
    async def count_failures(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Exception:
            failures.append(500)
            raise
        if response.status >= 500:
            failures.append(response.status)
        return response

    app = fake.app()
    app.middlewares.append(count_failures)
    server = BackgroundServer(app).start()
    fake.url = server.url  # type: ignore[attr-defined]
    yield fake, failures
    server.stop()


@pytest.fixture(scope="module")
def live(
    upstream: tuple[FakeUpstream, list[int]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """One ``llm-gateway serve`` process with cache, budgets and two keys, for the whole module."""
    import subprocess
    import sys

    import yaml

    from tests.conftest import base_policy
    from tests.fakes.redis_server import free_port

    fake, _ = upstream
    policy = base_policy(
        fake.url,  # type: ignore[attr-defined]
        cache={"enabled": True, "scope": "agent"},
        auth={
            "keys": [
                {"key": GATEWAY_KEY, "agent": "agent-1", "team": "backend"},
                {"key": TEAM_KEY, "team": "frontend"},
            ]
        },
        budgets={"sprints": [{"id": "s1", "total_tokens": 10_000_000, "agents": 4}]},
    )
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    port = free_port()
    log = open(folder / "gateway.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, Path(log.name))
        yield url, port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    text = Path(log.name).read_text()
    assert "Traceback" not in text, text[-4000:]


def _wait_healthy(url: str, proc: Any, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(log.read_text())


# --- what must hold for every answer --------------------------------------------------------------------


def check_answer(answer: RawResponse, method: str, path: str, upstream_failed: bool) -> None:
    assert upstream_failed or answer.status < 500, (answer.status, answer.body[:300])
    if path.startswith(("/v1/", "/admin/")):
        assert answer.header("x-request-id"), answer.headers
    if answer.status < 400 or method == "HEAD":
        if "event-stream" in (answer.header("content-type") or ""):
            check_events(answer.body)
        return
    assert (answer.header("content-type") or "").startswith("application/json"), answer.headers
    error = json.loads(answer.body)["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)


def check_events(body: bytes) -> None:
    """Every event of a stream is JSON (an error in the OpenAI shape) or the end marker."""
    for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                assert set(chunk["error"]) >= {"message", "type", "param", "code"}


Case = tuple[str, str, list[tuple[bytes, bytes]], bytes]
AS_AGENT = (b"Authorization", f"Bearer {GATEWAY_KEY}".encode())
AS_ADMIN = (b"Authorization", f"Bearer {ADMIN_KEY}".encode())
CHAT_HEAD = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "x": '


def chat_case(body: bytes, *headers: tuple[bytes, bytes]) -> Case:
    return ("POST", "/v1/chat/completions", [AS_AGENT, *headers], body)


PINNED: list[Case] = [
    # The cases found by hand when the gateway was attacked from outside:
    ("POST", "/v1/chat/completions", [(b"Authorization", b"Bearer \xff\xfe\xfd")], json.dumps(CHAT).encode()),
    ("POST", "/v1/chat/completions", [(b"api-key", b"\xc3\x28\xa0")], json.dumps(CHAT).encode()),
    chat_case(json.dumps(CHAT).encode(), (b"X-Request-Id", b"\xff\xfeid")),
    chat_case(json.dumps({**CHAT, "model": "gpt-4o-mini\x01\x7f"}).encode()),
    chat_case(json.dumps({**CHAT, "model": "gpt\n4o", "stream": True}).encode()),
    chat_case(CHAT_HEAD + b"[" * 300 + b"]" * 300 + b"}"),
    chat_case(CHAT_HEAD + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}"),
    chat_case(json.dumps({**CHAT, "temperature": 0}).encode(), (b"Cache-Control", b"max-age=" + b"9" * 40)),
    ("POST", "/v1/embeddings", [AS_AGENT], json.dumps({**VALID["/v1/embeddings"], "stream": True}).encode()),
    ("POST", "/admin/budgets/s1/adjust", [AS_ADMIN], json.dumps({"tokens": 10**17}).encode()),
    ("POST", "/v1/no/such/route", [AS_AGENT], b"{}"),
    ("GET", "/v1/responses/resp_123", [AS_AGENT], b""),
]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="FUZZ_RANDOM" not in os.environ,  # CI replays one sequence; FUZZ_RANDOM=1 explores
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=requests())
def test_every_answer_is_well_formed(
    live: tuple[str, int],
    upstream: tuple[FakeUpstream, list[int]],
    case: Case,
) -> None:
    method, path, sent_headers, body = case
    _, failures = upstream
    before = len(failures)
    answer = send(live[1], request_bytes(method, path, sent_headers, body))
    check_answer(answer, method, path, upstream_failed=len(failures) > before)


for _pinned in PINNED:
    test_every_answer_is_well_formed = example(case=_pinned)(test_every_answer_is_well_formed)


MALFORMED = [
    pytest.param(
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n", id="long-header"
    ),
    pytest.param(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", id="control-byte"),
    pytest.param(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ZZ\r\n{}\r\n0\r\n\r\n",
        id="bad-chunk-size",
    ),
    pytest.param(b"NOT-HTTP\r\n\r\n", id="garbage"),
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_http_gets_openai_json(live: tuple[str, int], data: bytes) -> None:
    answer = send(live[1], data)
    assert 400 <= answer.status < 500
    assert (answer.header("content-type") or "").startswith("application/json"), answer
    assert set(json.loads(answer.body)["error"]) >= {"message", "type", "param", "code"}


def test_the_gateway_stays_healthy_and_no_reservation_is_left(
    live: tuple[str, int], upstream: tuple[FakeUpstream, list[int]]
) -> None:
    """Runs after the generated requests (same module, same process)."""
    url, _ = live
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
    deadline = time.monotonic() + 10
    while True:
        report = httpx.get(f"{url}/admin/budgets", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        sprint = report["data"][0]
        reserved = [sprint["sprint"]["reserved"], *(a["reserved"] for a in sprint["agents"])]
        if not any(reserved) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not any(reserved), sprint
    # Real work went through: the surface was exercised past the door (the budget itself may have been
    # reset by a generated admin call, so the provider's count says it).
    fake, _ = upstream
    assert fake.count("/v1/chat/completions") > 0
