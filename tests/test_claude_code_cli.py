"""Claude Code itself (``claude -p``, the npm package pinned in ``tests/agents/claude``) against the fake
Anthropic API: it completes a prompt, sends what the gateway must relay (``?beta=true``, its key,
``anthropic-version``, ``anthropic-beta``, a session id in a header and in ``metadata.user_id``), and a
second run from another session reads the prompt cache the first one wrote. :func:`run_claude` takes any
base URL, so the same run can go through the gateway. CI installs the package (``.ci/run``); elsewhere
these tests are skipped when it is absent."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, GATEWAY_KEY
from tests.fakes.upstream import FakeUpstream
from tests.fakes.upstream_anthropic import AnthropicUpstream, serve_anthropic
from tests.messages_helpers import ANTHROPIC_KEY, fake_anthropic, messages_policy

CLAUDE = Path(__file__).parent / "agents" / "claude" / "node_modules" / ".bin" / "claude"
RECORDED = Path(__file__).parent / "data" / "claude_code_request.json"
KEY = "sk-ant-claude-code-0123456789"
PROMPT = "say hello in one word"

__all__ = ["fake_anthropic", "run_claude"]

needs_claude = pytest.mark.skipif(
    not CLAUDE.exists() and not os.environ.get("CI"),
    reason="Claude Code is not installed (npm ci --prefix tests/agents/claude)",
)


def run_claude(
    base_url: str, key: str, prompt: str, home: Path, *, auth_token: bool = False
) -> dict[str, Any]:
    """Run ``claude -p prompt`` against ``base_url`` with ``home`` as its HOME and working directory and no
    traffic but the API's; returns its ``--output-format json`` result (``result``, ``usage``, ...).
    ``auth_token`` sends the key as ``ANTHROPIC_AUTH_TOKEN`` (``Authorization: Bearer``), not
    ``x-api-key``."""
    assert CLAUDE.exists(), f"{CLAUDE} is missing: run npm ci --prefix tests/agents/claude"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN" if auth_token else "ANTHROPIC_API_KEY": key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    done = subprocess.run(
        [str(CLAUDE), "-p", prompt, "--output-format", "json"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (
        f"claude exited {done.returncode}: {done.stderr[-2000:]} {done.stdout[-2000:]}"
    )
    return json.loads(done.stdout)


@pytest.fixture
def fake() -> Iterator[tuple[AnthropicUpstream, str]]:
    with serve_anthropic(KEY) as served:
        yield served


@needs_claude
def test_claude_code_completes_a_prompt(fake: tuple[AnthropicUpstream, str], tmp_path: Path) -> None:
    upstream, url = fake
    result = run_claude(url, KEY, PROMPT, tmp_path)
    assert result["result"] == f"echo: {PROMPT}" and result["is_error"] is False
    assert result["usage"]["output_tokens"] > 0
    assert {(r.method, r.path) for r in upstream.requests} == {("POST", "/v1/messages")}  # no other endpoint
    for sent in upstream.requests:
        assert sent.query == {"beta": "true"} and sent.headers["x-api-key"] == KEY
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert "claude-code-20250219" in sent.headers["anthropic-beta"].split(",")
        body = sent.json
        assert body["stream"] is True and body["tools"] and body["max_tokens"] >= 32000
        session = sent.headers["x-claude-code-session-id"]
        assert json.loads(body["metadata"]["user_id"])["session_id"] == session == result["session_id"]


@needs_claude
def test_a_second_run_from_another_session_reads_the_cache(
    fake: tuple[AnthropicUpstream, str], tmp_path: Path
) -> None:
    first = run_claude(fake[1], KEY, PROMPT, tmp_path)
    second = run_claude(fake[1], KEY, PROMPT, tmp_path)
    assert first["session_id"] != second["session_id"]
    written = first["usage"]["cache_creation_input_tokens"]
    assert written > 1024 and first["usage"]["cache_read_input_tokens"] == 0
    assert second["usage"]["cache_read_input_tokens"] == written
    assert second["usage"]["cache_creation_input_tokens"] == 0


@needs_claude
def test_an_auth_token_is_sent_as_bearer(fake: tuple[AnthropicUpstream, str], tmp_path: Path) -> None:
    upstream, url = fake
    assert run_claude(url, KEY, PROMPT, tmp_path, auth_token=True)["result"] == f"echo: {PROMPT}"
    sent = upstream.messages()[0].headers
    assert sent["authorization"] == f"Bearer {KEY}" and "x-api-key" not in sent


def test_the_recorded_claude_code_request_is_what_the_fake_accepts(
    fake: tuple[AnthropicUpstream, str],
) -> None:
    # A request Claude Code sent (tests/data/claude_code_request.json, its key replaced): the strict fake
    # takes it as the real API does, with system turns allowed by the beta Claude Code declares.
    recorded = json.loads(RECORDED.read_text())
    headers = {**recorded["headers"], "x-api-key": KEY, "accept-encoding": "identity"}
    url = f"{fake[1]}{recorded['path']}"
    reply = httpx.post(url, params=recorded["query"], headers=headers, json=recorded["body"])
    assert reply.status_code == 200, reply.text
    assert "event: message_stop" in reply.text
    headers["anthropic-beta"] = ",".join(
        b for b in headers["anthropic-beta"].split(",") if b != "per-turn-control-2026-07-01"
    )
    refused = httpx.post(url, params=recorded["query"], headers=headers, json=recorded["body"])
    assert refused.status_code == 400 and "role" in refused.json()["error"]["message"]


# -- through the gateway ---------------------------------------------------------------------------------


@pytest.fixture
def claude_gateway(
    fake_upstream: FakeUpstream, fake_anthropic: AnthropicUpstream, start_gateway: Callable[..., str]
) -> str:
    """A gateway before the fake Anthropic API, with a cache, the ledger off and a sprint budget for the
    agent of the gateway key Claude Code presents."""
    sprint = {"id": "s1", "total_tokens": 5_000_000, "agents": ["agent-1"]}
    policy = messages_policy(
        fake_upstream.url,  # type: ignore[attr-defined]
        fake_anthropic.url,  # type: ignore[attr-defined]
        cache={"enabled": True},
        budgets={"sprints": [sprint]},
    )
    return start_gateway(policy)


def _scrape(url: str, prefix: str) -> float:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(prefix))


def _sprint_used(url: str) -> int:
    report = httpx.get(f"{url}/admin/budgets", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    return int(report["data"][0]["sprint"]["used"])


@needs_claude
def test_claude_code_through_the_gateway_is_metered_budgeted_and_cached(
    claude_gateway: str, fake_anthropic: AnthropicUpstream, tmp_path: Path
) -> None:
    used_metric = 'tokens_used_total{agent="agent-1",model="claude-opus-5-5"}'
    before = _scrape(claude_gateway, used_metric)
    first = run_claude(claude_gateway, GATEWAY_KEY, PROMPT, tmp_path)
    assert first["result"] == f"echo: {PROMPT}" and first["is_error"] is False
    (sent,) = fake_anthropic.messages()
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY and GATEWAY_KEY not in str(sent.headers)
    assert sent.query == {"beta": "true"} and "claude-code-20250219" in sent.headers["anthropic-beta"]
    usage = first["usage"]
    billed = (
        usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["output_tokens"]
    )
    assert _scrape(claude_gateway, used_metric) - before == billed
    assert _sprint_used(claude_gateway) == billed
    second = run_claude(claude_gateway, GATEWAY_KEY, PROMPT, tmp_path)  # another session, same task
    assert second["session_id"] != first["session_id"]
    assert second["result"] == first["result"] and second["is_error"] is False
    assert len(fake_anthropic.messages()) == 1, "the second session's identical request was a cache hit"
    assert _sprint_used(claude_gateway) == billed, "a hit costs the budget nothing"
    assert _scrape(claude_gateway, 'llm_cache_hits_total{endpoint="messages"}') >= 1


@needs_claude
def test_claude_code_with_an_auth_token_is_identified(
    claude_gateway: str, fake_anthropic: AnthropicUpstream, tmp_path: Path
) -> None:
    result = run_claude(claude_gateway, GATEWAY_KEY, "say hi", tmp_path, auth_token=True)
    assert result["result"] == "echo: say hi"
    sent = fake_anthropic.messages()[0].headers
    assert sent["x-api-key"] == ANTHROPIC_KEY and "authorization" not in sent
