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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.upstream_anthropic import AnthropicUpstream, serve_anthropic

CLAUDE = Path(__file__).parent / "agents" / "claude" / "node_modules" / ".bin" / "claude"
RECORDED = Path(__file__).parent / "data" / "claude_code_request.json"
KEY = "sk-ant-claude-code-0123456789"
PROMPT = "say hello in one word"

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
