"""Identity on the wire: a key that does not name an agent cannot pose as one (cache, budget), and key
bytes that are not UTF-8 get a 401, not a 500."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, base_policy
from tests.fakes.upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "whose answer is this"}]
KEYS = [
    {"key": "gw-alice", "agent": "alice", "team": "backend"},
    {"key": "gw-team", "team": "backend"},
    {"key": "gw-trusted", "team": "backend", "trust_agent_header": True},
]


def chat(url: str, key: str, headers: dict[str, str] | None = None, **body: Any) -> Any:
    with openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, default_headers=headers) as client:
        return client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, **body
        )


@pytest.fixture
def identity_gateway(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> Callable[..., str]:
    def start(**sections: Any) -> str:
        return start_gateway(base_policy(fake_upstream.url, auth={"keys": KEYS}, **sections))  # type: ignore[attr-defined]

    return start


def test_a_team_key_cannot_read_another_agents_cached_answer(
    identity_gateway: Callable[..., str], fake_upstream: FakeUpstream
) -> None:
    url = identity_gateway(cache={"enabled": True, "scope": "agent"})
    assert chat(url, "gw-alice").headers["X-Cache"] == "MISS"
    assert chat(url, "gw-alice").headers["X-Cache"] == "HIT"
    with pytest.raises(openai.PermissionDeniedError) as info:
        chat(url, "gw-team", {"X-Agent-Id": "alice"})
    assert info.value.code == "agent_header_not_trusted"
    assert chat(url, "gw-team", user="alice").headers["X-Cache"] == "MISS", "user does not make it alice"
    assert fake_upstream.count("/v1/chat/completions") == 2
    assert chat(url, "gw-trusted", {"X-Agent-Id": "alice"}).headers["X-Cache"] == "HIT", "trusted on purpose"


def test_a_team_key_cannot_charge_another_agents_budget(identity_gateway: Callable[..., str]) -> None:
    sprint = {"id": "s1", "total_tokens": 10_000, "agents": ["alice", "bob"], "unknown_agents": "share"}
    url = identity_gateway(budgets={"sprints": [sprint]})
    with pytest.raises(openai.PermissionDeniedError):
        chat(url, "gw-team", {"X-Agent-Id": "alice"})
    chat(url, "gw-team", user="alice")
    chat(url, "gw-trusted", {"X-Agent-Id": "bob"})
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    report = httpx.get(f"{url}/admin/budgets", headers=admin).json()["data"][0]
    used = {line["agent"]: line["used"] for line in report["agents"]}
    assert used.get("alice", 0) == 0 and used["anonymous"] > 0 and used["bob"] > 0


def raw_request(url: str, method: str, path: str, header: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request with a header line sent as raw bytes (clients refuse to send such bytes)."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n".encode()
    head += header + f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "header",
    [b"Authorization: Bearer gw-\xff\xfe", b"api-key: gw-\xe9t\xe9", b"x-api-key: \xed\xa0\x80"],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/chat/completions"), ("DELETE", "/admin/cache")])
def test_key_bytes_that_are_not_utf8_get_a_401(gateway: str, header: bytes, method: str, path: str) -> None:
    status, body = raw_request(gateway, method, path, header)
    assert status == 401
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    assert set(error) == {"message", "type", "param", "code"}
