"""The command line as operators meet it: ``--version``, each subcommand's help, what ``serve`` says at
start (client URL, policy, store, providers without a key, also in ``/readyz``), log rendering, and the
ledger file's default home."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import structlog

from gateway import logs
from gateway.cli import main
from gateway.policy import Policy
from gateway.policy.ledger import LedgerConfig
from gateway.startup import client_base_url, masked_url
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream
from tests.ledger_helpers import file_lines, running

SUBCOMMANDS = ("serve", "autoscale", "check-config", "report", "replay")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_version_comes_from_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == f"llm-gateway {version('llm-gateway')}\n"


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_help_has_a_sentence_and_an_example(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = run(capsys, name, "--help")
    description = text.split("\n\n")[1]
    assert description[0].isupper() and description.rstrip().endswith("."), description
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert examples and all(f"llm-gateway {name}" in line for line in examples if line.strip())


def test_every_subcommand_is_covered_above(capsys: pytest.CaptureFixture[str]) -> None:
    listed = run(capsys, "--help").split("  COMMAND\n", 1)[1].split("\n\n", 1)[0]
    names = [line.split()[0] for line in listed.splitlines() if line[:4] == "    " and line[4] != " "]
    assert names == list(SUBCOMMANDS)


def test_client_url_and_masked_store_url() -> None:
    assert client_base_url("0.0.0.0", 8080) == "http://127.0.0.1:8080/v1"
    assert client_base_url("::", 9000) == "http://[::1]:9000/v1"
    assert client_base_url("gw.internal", 80) == "http://gw.internal:80/v1"
    assert masked_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert masked_url("rediss://app:s3cret@redis/1") == "rediss://app:***@redis/1"
    assert masked_url("redis://redis:6379/0") == "redis://redis:6379/0"


def events(log_path: str, name: str) -> list[dict[str, Any]]:
    lines = Path(log_path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{") and f'"{name}"' in line]


def test_serve_announces_url_policy_store_and_a_provider_without_key(
    policy_file: Callable[..., Path],
    serve: Callable[..., tuple[Any, str]],
    fake_upstream: FakeUpstream,
) -> None:
    path = policy_file(providers={"openai": {"base_url": fake_upstream.url + "/v1"}})  # type: ignore[attr-defined]
    proc, url = serve(path)
    port = url.rsplit(":", 1)[1]
    ready = httpx.get(f"{url}/readyz")
    # a local OpenAI-compatible server may need no key: reported, still ready
    assert ready.status_code == 200 and ready.json()["provider_keys"] == {"openai": "no api key"}
    (serving,) = events(proc.log_path, "serving")  # JSON lines: the log is not a terminal
    assert serving["openai_base_url"] == f"http://127.0.0.1:{port}/v1"
    assert serving["policy"] == str(path.resolve()) and serving["store"] == "memory (in-process)"
    (warning,) = events(proc.log_path, "provider_without_key")
    assert warning["level"] == "warning" and warning["provider"] == "openai"


def test_readyz_is_not_ready_when_a_provider_that_needs_a_key_has_none(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    keyed = start_gateway(base_policy(fake_upstream.url))  # type: ignore[attr-defined]
    assert httpx.get(f"{keyed}/readyz").json()["provider_keys"] == {}
    official = {"openai": {"base_url": "https://api.openai.com/v1", "api_key": ""}}
    url = start_gateway(base_policy(fake_upstream.url, providers=official))  # type: ignore[attr-defined]
    response = httpx.get(f"{url}/readyz")
    assert response.status_code == 503 and response.json()["provider_keys"] == {"openai": "no api key"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def render(fmt: str, stream: io.StringIO) -> str:
    """One event through the configured chain (scrubbing included) into ``stream``."""
    logs.configure("info", fmt)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(stream), cache_logger_on_first_use=False)
    try:
        logs.get_logger("t").info(
            "hello", agent="a1", authorization="Bearer sk-abcdefghijklmnop", detail="sent sk-qrstuvwxyzabcd"
        )
    finally:
        structlog.reset_defaults()  # leave logging as other tests expect it (unconfigured, unfiltered)
    return stream.getvalue()


def test_logs_are_json_off_a_terminal_and_readable_on_one() -> None:
    assert isinstance(logs.renderer("auto", io.StringIO()), structlog.processors.JSONRenderer)
    assert isinstance(logs.renderer("auto", Terminal()), structlog.dev.ConsoleRenderer)
    assert isinstance(logs.renderer("json", Terminal()), structlog.processors.JSONRenderer)
    line = json.loads(render("json", io.StringIO()))
    assert line["event"] == "hello" and line["authorization"] == "[redacted]"
    console = render("console", io.StringIO())
    assert console.startswith("20") and "hello" in console and "agent=a1" in console
    assert "sk-abcdefghijklmnop" not in console and "[redacted]" in console
    assert "qrstuvwxyzabcd" not in console, "the readable line is scrubbed too, not only named values"
    assert "\x1b[" not in console, "no colour codes when the stream is not a terminal"


def test_logging_format_is_a_policy_key() -> None:
    assert Policy.model_validate({"logging": {"format": "console"}}).logging.format == "console"
    with pytest.raises(ValueError, match="format"):
        Policy.model_validate({"logging": {"format": "xml"}})


def test_ledger_file_defaults_to_the_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GATEWAY_STATE_DIR")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert LedgerConfig().file == str(tmp_path / "home/.local/state/llm-gateway/ledger.jsonl")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert LedgerConfig().file == str(tmp_path / "xdg/llm-gateway/ledger.jsonl")
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path / "state"))
    assert LedgerConfig().file == str(tmp_path / "state/ledger.jsonl")
    assert Policy.model_validate({}).ledger.file == str(tmp_path / "state/ledger.jsonl"), "read at load"


def test_the_ledger_file_is_created_in_the_state_directory_on_first_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    state = tmp_path / "state" / "nested"
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(state))
    monkeypatch.chdir(tmp_path)
    policy = base_policy(fake_upstream.url, ledger={"enabled": True, "heartbeat_interval_s": 0})  # type: ignore[attr-defined]
    with running(policy) as url:
        assert not state.exists(), "created by the first write, not at start"
        with openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    records, _ = file_lines(state / "ledger.jsonl")
    assert [r["status"] for r in records] == [200]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"], "nothing written in the working directory"
