"""The provider key never reaches a client: not in bodies (in any escaping), headers, SSE events, logs or the
ledger, whole or any 8 characters of it; errors relayed from any route are OpenAI-shaped."""

from __future__ import annotations

import html
import io
import json
import random
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import openai
import orjson
import pytest
import structlog
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import logs
from gateway.context import Outcome, Request
from gateway.ledger.record import Finished, RecordBuilder, written
from gateway.policy import Policy
from gateway.pricing import PriceBook
from gateway.protocols import CHAT as CHAT_PROTOCOL
from gateway.redact import Holdback, Redactor, redactor, remember
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream

AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
PROVIDER_KEY = "sk-proj-Q7xZ2mN9vB4kL1pR8tY6wE3uHj5c"
"""A key of the usual shape (the suite's shared test key spells ``provider``, which gateway text uses)."""
SLICES = [PROVIDER_KEY[i : i + 8] for i in range(len(PROVIDER_KEY) - 7)]
_UNICODE = re.compile(r"\\+u([0-9a-fA-F]{4})")


def decodings(text: str) -> list[str]:
    """What a reader may make of ``text``: as is, JSON-unescaped (repeatedly), URL- and HTML-decoded."""
    seen = [text]
    for _ in range(3):
        step = _UNICODE.sub(lambda m: chr(int(m.group(1), 16)), seen[-1]).replace("\\/", "/")
        seen += [step, unquote(unquote(step)), html.unescape(step)]
    return seen


def exposed(text: str) -> list[str]:
    """Every 8-character slice of the provider key that ``text`` shows, in any decoding."""
    return sorted({piece for view in decodings(text) for piece in SLICES if piece in view})


def shown(response: httpx.Response) -> str:
    """Everything a client sees of an answer but its status line."""
    return "\n".join(f"{k}: {v}" for k, v in response.headers.items()) + "\n" + response.text


# --- the redactor itself ----------------------------------------------------------------------------------


def _escape(char: str, how: str) -> str:
    return {
        "plain": char,
        "json": f"\\u{ord(char):04x}",
        "JSON": f"\\u{ord(char):04X}",
        "twice": f"\\\\u{ord(char):04x}",
        "percent": f"%{ord(char):02X}",
        "percent-twice": f"%25{ord(char):02x}",
        "entity": f"&#{ord(char)};",
        "hex-entity": f"&#x{ord(char):x};",
    }[how]


HOWS = ("plain", "json", "JSON", "twice", "percent", "percent-twice", "entity", "hex-entity")


@pytest.mark.parametrize("how", [*HOWS, "mixed"])
def test_any_slice_in_any_escaping_is_redacted(how: str) -> None:
    clean = Redactor([PROVIDER_KEY])
    rng = random.Random(how)
    for start in range(len(PROVIDER_KEY) - 7):
        for end in (start + 8, len(PROVIDER_KEY)):
            piece = "".join(
                _escape(c, rng.choice(HOWS) if how == "mixed" else how) for c in PROVIDER_KEY[start:end]
            )
            text = f'{{"error": {{"message": "key {piece} is wrong", "n": {start}}}}}'
            out = clean.text(text)
            assert not exposed(out), (piece, out)
            assert "[redacted]" in out and out.startswith('{"error": {"message": "key ')
            assert clean.data(text.encode()) == out.encode()


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    start=st.integers(0, len(PROVIDER_KEY) - 8),
    length=st.integers(8, len(PROVIDER_KEY)),
    hows=st.lists(st.sampled_from(HOWS), min_size=1, max_size=4),
)
def test_a_slice_anywhere_in_any_text_is_redacted(
    before: str, after: str, start: int, length: int, hows: list[str]
) -> None:
    piece = PROVIDER_KEY[start : start + length]
    written = "".join(_escape(c, hows[i % len(hows)]) for i, c in enumerate(piece))
    text = before + written + after
    out = Redactor([PROVIDER_KEY]).text(text)
    assert not exposed(out) and "[redacted]" in out
    assert Redactor([PROVIDER_KEY]).data(text.encode("utf-8", "surrogatepass")) == out.encode(
        "utf-8", "surrogatepass"
    )


def test_clean_text_is_untouched_and_cheap_to_check() -> None:
    clean = Redactor([PROVIDER_KEY])
    event = b'data: {"choices": [{"delta": {"content": "caf\\u00e9 sk-p 50% \\n"}}]}'
    assert clean.data(event) is event
    text = "sk-prov and -SECRET alone are not 8 characters of it"
    assert clean.text(text) is text
    assert not clean.suspicious(b'data: {"choices": [{"delta": {"content": "hello world"}}]}')
    assert clean.text("x" + PROVIDER_KEY[3:11] + "y") == "x[redacted]y"


def test_holdback_finds_a_key_split_across_chunks() -> None:
    clean = Redactor([PROVIDER_KEY])
    body = ("a" * 700 + "token=" + PROVIDER_KEY.replace("-", "%2D") + " end" + "b" * 300).encode()
    for cut in range(690, 760):
        held = Holdback(clean)
        out = held.feed(body[:cut]) + held.feed(body[cut:]) + held.end()
        assert not exposed(out.decode()) and out.endswith(b" end" + b"b" * 300), cut


def test_log_lines_scrub_nested_values_and_exceptions() -> None:
    remember((PROVIDER_KEY,))
    out = io.StringIO()
    log = structlog.wrap_logger(structlog.PrintLogger(out), processors=logs.processors())
    escaped = PROVIDER_KEY.replace("-", "\\u002d")
    try:
        raise RuntimeError(f"upstream said {PROVIDER_KEY}")
    except RuntimeError:
        log.error("boom", detail={"headers": {"x": [f"Bearer {PROVIDER_KEY}"]}}, raw=escaped, exc_info=True)
    line = out.getvalue()
    assert not exposed(line), line
    parsed = json.loads(line)
    assert parsed["event"] == "boom" and "RuntimeError" in parsed["exception"]


def test_ledger_records_carry_no_key() -> None:
    remember((PROVIDER_KEY,))
    policy = Policy.model_validate(base_policy("http://127.0.0.1:9", ledger={"include_prompts": True}))
    body = {"model": "m", "messages": [{"role": "user", "content": f"my key is {PROVIDER_KEY}"}]}
    asked = Request("r1", CHAT_PROTOCOL, "a", "t", task_id=PROVIDER_KEY, body=body)
    ctx = Outcome(asked, "m")
    done = Finished("r1", "/v1/chat/completions", 200, time.time(), 0.01, error=PROVIDER_KEY[2:12])
    record = written(RecordBuilder(policy, PriceBook.from_policy(policy)).build(done, ctx))
    assert not exposed(orjson.dumps(record).decode()), record
    assert record["request_id"] == "r1" and record["prompt"][0]["role"] == "user"


# --- through the gateway ----------------------------------------------------------------------------------


def policy(upstream_url: str, **sections: Any) -> dict[str, Any]:
    policy = base_policy(upstream_url, **sections)
    policy["providers"]["openai"]["api_key"] = PROVIDER_KEY
    return policy


@pytest.fixture
def gateway(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> str:
    fake_upstream.expected_key = PROVIDER_KEY
    return start_gateway(policy(fake_upstream.url))  # type: ignore[attr-defined]


@pytest.fixture
def served(
    serve: Callable[..., tuple[subprocess.Popen[str], str]], fake_upstream: FakeUpstream, tmp_path: Path
) -> tuple[subprocess.Popen[str], str, Path]:
    """``llm-gateway serve`` with real logs and a ledger file."""
    fake_upstream.expected_key = PROVIDER_KEY
    ledger = tmp_path / "ledger.jsonl"
    path = tmp_path / "leaky.yaml"
    url = fake_upstream.url  # type: ignore[attr-defined]
    path.write_text(yaml.safe_dump(policy(url, ledger={"enabled": True, "file": str(ledger)})))
    proc, gateway = serve(path)
    return proc, gateway, ledger


def test_escaped_key_in_an_error_body_is_redacted(gateway: str, fake_upstream: FakeUpstream) -> None:
    fake_upstream.leak_next("escaped_error")
    response = httpx.post(f"{gateway}/v1/chat/completions", json=CHAT, headers=AUTH)
    assert response.status_code == 400 and not exposed(shown(response)), shown(response)
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_only_allowed_headers_are_relayed_and_redacted(gateway: str, fake_upstream: FakeUpstream) -> None:
    fake_upstream.leak_next("headers")
    response = httpx.post(f"{gateway}/v1/chat/completions", json=CHAT, headers=AUTH)
    assert response.status_code == 200 and not exposed(shown(response)), shown(response)
    assert response.headers["X-Upstream-Request-Id"] == "Bearer [redacted]"
    assert "set-cookie" not in response.headers and "x-echo-authorization" not in response.headers
    assert response.headers["X-Request-Id"] and response.json()["choices"][0]["message"]["content"]


def test_sse_error_event_is_redacted(
    client: openai.OpenAI, gateway: str, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.leak_next("sse_error")
    with httpx.stream(
        "POST", f"{gateway}/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH
    ) as r:
        r.read()
        text = shown(r)
    assert not exposed(text), text
    assert "Bearer [redacted]" in text
    fake_upstream.leak_next("sse_error")
    with pytest.raises(openai.APIError):  # the SDK still sees the error
        for _ in client.chat.completions.create(**CHAT, stream=True):
            pass


def test_long_error_is_redacted_before_it_is_cut(gateway: str, fake_upstream: FakeUpstream) -> None:
    fake_upstream.leak_next("long_error", times=3)  # every retry
    response = httpx.post(f"{gateway}/v1/chat/completions", json=CHAT, headers=AUTH)
    assert response.status_code == 502 and not exposed(shown(response)), shown(response)
    assert "[redacted]" in response.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/responses"), ("GET", "/v1/unknown/thing")])
def test_plain_text_provider_errors_are_openai_shaped(
    gateway: str, fake_upstream: FakeUpstream, method: str, path: str
) -> None:
    fake_upstream.leak_next("plain_error")
    response = httpx.request(
        method, gateway + path, json={"model": "gpt-4o-mini", "input": "x"}, headers=AUTH
    )
    assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] == "404: Not Found"
    assert error["type"] == "invalid_request_error"
    assert response.headers["X-Request-Id"]


def test_passthrough_answers_carry_a_request_id_and_no_key(gateway: str, fake_upstream: FakeUpstream) -> None:
    ok = httpx.post(f"{gateway}/v1/responses", json={"model": "gpt-4o-mini", "input": "x"}, headers=AUTH)
    assert ok.status_code == 200 and ok.json()["object"] == "response"
    given = httpx.get(f"{gateway}/v1/files", headers={**AUTH, "X-Request-Id": "mine-1"})
    assert given.status_code == 200 and given.headers["X-Request-Id"] == "mine-1"
    assert ok.headers["X-Request-Id"] and ok.headers["X-Request-Id"] != ok.headers.get(
        "X-Upstream-Request-Id"
    )
    fake_upstream.leak_next("headers", path="/v1/responses")
    leaked = httpx.post(f"{gateway}/v1/responses", json={"model": "gpt-4o-mini", "input": "x"}, headers=AUTH)
    assert leaked.status_code == 200 and not exposed(shown(leaked)), shown(leaked)
    fake_upstream.leak_next("escaped_error", path="/v1/responses")
    refused = httpx.post(f"{gateway}/v1/responses", json={"model": "gpt-4o-mini", "input": "x"}, headers=AUTH)
    assert refused.status_code == 400 and not exposed(shown(refused)), shown(refused)


def test_relayed_files_are_redacted_even_when_split(gateway: str) -> None:
    content = b"x" * 70_000 + b"key=" + PROVIDER_KEY.encode() + b"\n" + b"y" * 70_000
    files = {"file": ("notes.txt", content, "text/plain")}
    uploaded = httpx.post(f"{gateway}/v1/files", headers=AUTH, files=files, data={"purpose": "batch"})
    assert uploaded.status_code == 200, uploaded.text
    got = httpx.get(f"{gateway}/v1/files/{uploaded.json()['id']}/content", headers=AUTH)
    assert got.status_code == 200 and not exposed(got.text)
    assert got.content == b"x" * 70_000 + b"key=[redacted]\n" + b"y" * 70_000


def test_no_channel_of_a_served_gateway_shows_the_key(
    served: tuple[subprocess.Popen[str], str, Path], fake_upstream: FakeUpstream
) -> None:
    proc, url, ledger = served
    seen = []
    for mode, times, stream in [
        ("escaped_error", 1, False),
        ("headers", 1, False),
        ("sse_error", 1, True),
        ("long_error", 3, False),
    ]:
        fake_upstream.leak_next(mode, times=times)
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": stream}, headers=AUTH
        ) as r:
            r.read()
            seen.append(shown(r))
    seen.append(httpx.get(f"{url}/metrics").text)
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    log_text = Path(proc.log_path).read_text()  # type: ignore[attr-defined]
    assert log_text.count('"event":"request"') == 4
    for text in [*seen, log_text, ledger.read_text()]:
        assert not exposed(text), text


# --- item: a finished stream is a success, even when the client hangs up at once ---------------------------


def _metric(url: str, code: str) -> float:
    pattern = re.compile(
        r'^gateway_requests_total\{code="' + code + r'",endpoint="chat.completions"\} (\S+)$', re.M
    )
    found = pattern.search(httpx.get(f"{url}/metrics").text)
    return float(found.group(1)) if found else 0.0


def _stream_and_hang_up(url: str, request_id: str) -> bytes:
    """A raw HTTP/1.1 client that closes the socket the moment it has read ``data: [DONE]``."""
    host, port = url.removeprefix("http://").split(":")
    body = orjson.dumps({**CHAT, "stream": True})
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {GATEWAY_KEY}\r\n"
        f"X-Request-Id: {request_id}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        while b"data: [DONE]" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    return received


def _until(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def test_stream_closed_right_after_done_is_recorded_as_200(
    served: tuple[subprocess.Popen[str], str, Path], fake_upstream: FakeUpstream
) -> None:
    proc, url, ledger = served
    fake_upstream.linger_s = 0.3  # the client is gone before the provider's stream ends
    before_ok, before_gone = _metric(url, "200"), _metric(url, "499")
    for i in range(5):
        assert b"data: [DONE]" in _stream_and_hang_up(url, f"hangup-{i}")
    assert _until(lambda: _metric(url, "200") >= before_ok + 5), httpx.get(f"{url}/metrics").text
    assert _metric(url, "499") == before_gone
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    statuses = {
        r["request_id"]: r["status"] for r in records if r.get("request_id", "").startswith("hangup-")
    }
    assert statuses == {f"hangup-{i}": 200 for i in range(5)}
    lines = [json.loads(x) for x in Path(proc.log_path).read_text().splitlines() if x.startswith("{")]  # type: ignore[attr-defined]
    logged = {x["request_id"]: x["status"] for x in lines if x.get("event") == "request"}
    assert {k: v for k, v in logged.items() if k.startswith("hangup-")} == statuses
    assert all(r.get("tokens_used", 0) > 0 for r in records if r.get("request_id", "").startswith("hangup-"))


def test_a_providers_redactor_is_built_once_not_per_request() -> None:
    first = redactor(("sk-once-per-provider-1234",))
    assert redactor(("sk-once-per-provider-1234",)) is first
    assert first.data(b'{"k": "sk-once-per-provider-1234"}') != b'{"k": "sk-once-per-provider-1234"}'
    assert redactor(("sk-a-rotated-key-56789",)) is not first, "another key, its own tables"
