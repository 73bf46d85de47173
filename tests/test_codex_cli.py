"""The Codex CLI (npm ``@openai/codex``, pinned in tests/agents/codex) completes a task on the Responses API.

:func:`run_codex` runs ``codex exec`` against any base URL (the fake provider here, the gateway elsewhere)
with a throw-away ``CODEX_HOME`` whose only provider is that URL, so nothing reaches OpenAI. The CLI is
installed by ``.ci/run`` (``npm ci --prefix tests/agents/codex``); outside CI a missing install skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GATEWAY_KEY, base_policy
from tests.conftest import PROVIDER_KEY as KEY
from tests.fakes.upstream import FakeUpstream, RecordedRequest
from tests.fakes.upstream_responses_bodies import item_text
from tests.ledger_helpers import running, stream_records
from tests.test_responses import budget_used, settled, used

CODEX_DIR = Path(__file__).parent / "agents" / "codex"
CODEX_BIN = CODEX_DIR / "node_modules" / ".bin" / "codex"
SAMPLE = Path(__file__).parent / "data" / "codex_responses_request.json"
MODEL = "gpt-5.1-codex"
TASK = "Say hello"


def codex_available() -> bool:
    return shutil.which("node") is not None and CODEX_BIN.exists()


@pytest.fixture(autouse=True)
def _need_codex() -> None:
    if not codex_available():
        if os.environ.get("CI"):
            pytest.fail("the Codex CLI is not installed: run npm ci --prefix tests/agents/codex")
        pytest.skip("the Codex CLI is not installed (npm ci --prefix tests/agents/codex)")


@dataclass(slots=True)
class CodexRun:
    returncode: int
    stdout: str  # the final answer (codex exec prints only that on stdout)
    stderr: str  # the transcript: banner, commands run, tokens used


def codex_config(base_url: str, model: str = MODEL) -> str:
    """A ``config.toml`` whose only provider is ``base_url`` (…/v1); retries, updates, telemetry off."""
    return f"""model = "{model}"
model_provider = "under_test"
check_for_update_on_startup = false

[model_providers.under_test]
name = "under test"
base_url = "{base_url}"
env_key = "UNDER_TEST_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
"""


def run_codex(
    base_url: str, api_key: str, home: Path, prompt: str = TASK, *, model: str = MODEL, timeout: float = 90.0
) -> CodexRun:
    """Run ``codex exec`` once (always a new session) against ``base_url`` (ending in /v1), with
    ``CODEX_HOME`` and the working directory under ``home``; a second run in the same ``home`` sends the
    same prompt (Codex puts the working directory and the date in it), under a new session id."""
    codex_home, work = home / "codex-home", home / "work"
    codex_home.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(base_url, model))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "UNDER_TEST_API_KEY": api_key,
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [str(CODEX_BIN), "exec", "--skip-git-repo-check", "--ephemeral", prompt],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CodexRun(done.returncode, done.stdout, done.stderr)


def tokens_used(run: CodexRun) -> int:
    """The token count Codex prints at the end of a run."""
    found = re.search(r"^tokens used\n([\d,]+)$", run.stderr, re.MULTILINE)
    assert found, run.stderr
    return int(found.group(1).replace(",", ""))


def sample_request(request: RecordedRequest) -> dict[str, Any]:
    """``request`` as saved in tests/data: the key replaced, hop-by-hop headers dropped."""
    headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
    headers["authorization"] = "Bearer <key>"
    return {"method": request.method, "path": request.path, "headers": headers, "body": request.json}


def test_codex_exec_completes_against_the_fake(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    fake = fake_upstream
    run = run_codex(fake.url + "/v1", KEY, tmp_path)
    assert run.returncode == 0, run.stderr
    posted = [r for r in fake.requests if r.path == "/v1/responses"]
    assert [r.method for r in fake.requests] == ["POST"] * len(fake.requests) and len(posted) == 2
    first, second = (r.json for r in posted)
    # The fake answered a tool call first (Codex ran it), then the tool's output as the final answer.
    call = next(i for i in second["input"] if i["type"] == "function_call")
    result = second["input"][-1]
    assert result["type"] == "function_call_output" and result["call_id"] == call["call_id"]
    assert ("echo: " + item_text(result)).strip() in run.stdout
    # Codex keeps nothing on the provider and carries the encrypted reasoning itself.
    for body in (first, second):
        assert body["stream"] is True and body["store"] is False and "previous_response_id" not in body
        assert body["include"] == ["reasoning.encrypted_content"]
    reasoning = next(i for i in second["input"] if i["type"] == "reasoning")
    assert reasoning["encrypted_content"].startswith("gAAAAA")
    assert second["input"][: len(first["input"])] == first["input"]  # the whole context is resent
    for request in posted:
        assert request.headers["authorization"] == "Bearer " + KEY
        assert request.headers["session-id"] == request.json["prompt_cache_key"]
    # Codex read the usage: it reports uncached input plus output, and the resent prefix was cached.
    usages = [record.answer.usage for record in fake.responses.responses.values()]
    assert usages[1]["input_tokens_details"]["cached_tokens"] >= 1024
    billed = sum(
        u["input_tokens"] - u["input_tokens_details"]["cached_tokens"] + u["output_tokens"] for u in usages
    )
    assert tokens_used(run) == billed


def without_ids(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` less what Codex makes fresh per session: the session id and every input item's id."""
    rest = {k: v for k, v in body.items() if k not in ("prompt_cache_key", "client_metadata")}
    rest["input"] = [{k: v for k, v in item.items() if k != "id"} for item in body["input"]]
    return rest


def test_each_run_is_a_new_session(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    """Two identical runs send the same prompt under fresh ids: the session id (``prompt_cache_key``,
    ``session-id``, ``thread-id``, ``x-client-request-id``, ``x-codex-window-id``, ``x-codex-turn-metadata``,
    ``client_metadata``) and the id of every input item."""
    fake, firsts = fake_upstream, []
    for _ in range(2):
        fake.reset()
        assert run_codex(fake.url + "/v1", KEY, tmp_path).returncode == 0
        firsts.append(next(r for r in fake.requests if r.path == "/v1/responses"))
    one, two = firsts
    assert without_ids(one.json) == without_ids(two.json) and one.json["model"] == MODEL
    session = one.json["prompt_cache_key"]
    assert session != two.json["prompt_cache_key"]
    assert one.json["client_metadata"]["session_id"] == session != two.json["client_metadata"]["session_id"]
    fresh = ("session-id", "thread-id", "x-client-request-id", "x-codex-window-id", "x-codex-turn-metadata")
    for name in fresh:
        assert session in one.headers[name] and one.headers[name] != two.headers[name]
    ids = [[i.get("id") for i in r.json["input"]] for r in firsts]
    assert not set(ids[0]) & set(ids[1])  # even the unchanged instructions get a new id
    assert one.json["input"][-1]["content"] == [{"type": "input_text", "text": TASK}]


def test_saved_sample_matches_what_codex_sends(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    """tests/data/codex_responses_request.json is one real first request of this Codex version."""
    fake = fake_upstream
    assert run_codex(fake.url + "/v1", KEY, tmp_path).returncode == 0
    now = sample_request(next(r for r in fake.requests if r.path == "/v1/responses"))
    if os.environ.get("REFRESH_CODEX_SAMPLE"):
        SAMPLE.write_text(json.dumps(now, indent=1, ensure_ascii=False) + "\n")
    saved = json.loads(SAMPLE.read_text())
    assert KEY not in SAMPLE.read_text()
    assert sorted(saved["headers"]) == sorted(now["headers"]) and sorted(saved["body"]) == sorted(now["body"])
    assert saved["headers"]["user-agent"].split()[0] == now["headers"]["user-agent"].split()[0]  # version
    assert [i["type"] for i in saved["body"]["input"]] == [i["type"] for i in now["body"]["input"]]


# --- through the gateway ------------------------------------------------------------------------------------


def codex_policy(fake: FakeUpstream, redis_url: str) -> dict[str, Any]:
    models = {
        MODEL: {"provider": "openai", "tier": "large", "price": {"input_per_mtok": 1, "output_per_mtok": 8}}
    }
    budgets = {"sprints": [{"id": "s1", "total_tokens": 1_000_000, "agents": ["agent-1"]}]}
    return base_policy(
        fake.url,  # type: ignore[attr-defined]
        store={"url": redis_url},
        cache={"enabled": True},
        ledger={"enabled": True},
        models=models,
        budgets=budgets,
    )


def test_codex_through_the_gateway_is_charged_and_a_second_run_is_a_cache_hit(
    fake_upstream: FakeUpstream, redis_url: str, tmp_path: Path
) -> None:
    fake = fake_upstream
    before = used("agent-1", MODEL)
    with running(codex_policy(fake, redis_url)) as url:
        first = run_codex(url + "/v1", GATEWAY_KEY, tmp_path)
        assert first.returncode == 0, first.stderr
        posted = [r for r in fake.requests if r.path == "/v1/responses"]
        assert len(posted) == 2 and "echo: " in first.stdout
        usages = [record.answer.usage for record in fake.responses.responses.values()]
        billed = sum(u["total_tokens"] for u in usages)
        assert settled(lambda: used("agent-1", MODEL) - before, billed) == billed
        assert settled(lambda: budget_used(url), billed) == billed
        assert tokens_used(first) == sum(
            u["input_tokens"] - u["input_tokens_details"]["cached_tokens"] + u["output_tokens"]
            for u in usages
        ), "Codex read the provider's usage through the gateway"
        for request in posted:  # what the provider needs, and nothing that only names the session
            assert request.headers["authorization"] == "Bearer " + KEY
            assert not {"session-id", "thread-id", "x-codex-window-id"} & set(request.headers)
            assert request.json["store"] is False and request.json["include"] == [
                "reasoning.encrypted_content"
            ]
        second = run_codex(url + "/v1", GATEWAY_KEY, tmp_path)  # a new session, the same task
        assert second.returncode == 0, second.stderr
        assert "echo: " in second.stdout
        again = [r for r in fake.requests if r.path == "/v1/responses"][2:]
        # The first turn is answered from the cache; the tool Codex then runs reports a fresh chunk id and
        # wall time, so the turn that carries its output is a new prompt, which the provider answers.
        assert len(again) == 1 and again[0].json["input"][-1]["type"] == "function_call_output"
        assert without_ids(again[0].json)["input"][:-1] == without_ids(posted[1].json)["input"][:-1]
        follow = list(fake.responses.responses.values())[-1].answer.usage["total_tokens"]
        spent = billed + follow
        assert settled(lambda: used("agent-1", MODEL) - before, spent) == spent
    records = [r for r in stream_records(redis_url) if r["endpoint"] == "responses"]
    assert [r["cache"] for r in records] == ["MISS", "MISS", "HIT", "MISS"]
    assert sum(r["tokens_used"] for r in records[:2]) == billed and all(r["cost_usd"] for r in records[:2])
    assert records[2]["tokens_saved"] == usages[0]["total_tokens"] and not records[2].get("tokens_used")
