"""``llm-gateway report``: its figures match a hand-computed fixture ledger (tests/data/ledger_fixture.jsonl).

The fixture, 2030-01-01 from 10:00:00 to 10:01:40 UTC (100 s), twelve requests:
r1 miss 100+50 tokens; r2 and r12 cache hits of r1's answer (150 saved each); r3 miss 200+100;
r4-r6 one batch using 80, 90, 90 tokens and saving 100, 90, 90; r7 bypass (no-store) 40+10;
r8 refused by the budget; r9 failed upstream (502, 1500 ms); r10 a 401 with no agent; r11 embeddings 30.
Heartbeats: the gateway beats until 10:01:00 (covered to 10:01:07.5), is down, and is back from 10:01:20
(87.5 s of 100); the autoscaler beats all along.
"""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from gateway.cli import main
from gateway.policy import Policy
from gateway.reporting import report
from gateway.reporting.progress import Progress
from gateway.reporting.source import Selection, parse_time

FIXTURE = Path(__file__).parent / "data" / "ledger_fixture.jsonl"
START = parse_time("2030-01-01T10:00:00Z")


def load(selection: Selection | None = None) -> report.Summary:
    return report.load(str(FIXTURE), Policy(), selection or Selection(), show_progress=False)[1]


def test_kpis_match_the_hand_computed_figures() -> None:
    summary = load()
    kpis = summary.kpis()
    assert kpis["hit_rate"] == pytest.approx(2 / 9)  # hits r2 r12; misses r1 r3 r4 r5 r6 r9 r11; r7 bypassed
    assert summary.tokens_used == 150 + 300 + 80 + 90 + 90 + 50 + 30
    assert summary.baseline_tokens == 790 + 150 + 150 + 100 + 90 + 90
    assert kpis["token_reduction"] == pytest.approx(1 - 790 / 1370)
    assert kpis["batch_efficiency"] == pytest.approx(1 - 260 / 540)
    assert kpis["uptime"] == pytest.approx(0.875), "the lower of gateway (87.5 %) and autoscaler (100 %)"
    assert summary.uptime == {"gateway": pytest.approx(0.875), "autoscaler": 1.0}
    # latencies of model requests not refused with a 4xx: 10 values, the 95th by nearest rank is the 10th
    assert kpis["p95_latency_ms"] == 1500
    assert (summary.start, summary.end) == (START, START + 100)


def test_requests_cost_agents_and_routing() -> None:
    summary = load()
    assert (summary.requests, summary.model_requests, summary.answered) == (12, 12, 9)
    assert (summary.refused_budget, summary.rejected, summary.failed) == (1, 1, 1)
    assert (summary.batches, summary.batch_members, summary.priced) == (1, 3, 8)
    assert summary.cost_usd == pytest.approx(0.0003 + 0.004 + 3 * 0.0002 + 0.00005)
    assert summary.baseline_cost_usd == pytest.approx(4 * 0.003 + 0.004 + 0.00005)
    assert summary.cost_reduction == pytest.approx(1 - 0.00495 / 0.01605)
    a1, a2, a3 = (summary.agents[name] for name in ("a1", "a2", "a3"))
    assert (a1.requests, a1.tokens_used, a1.tokens_saved) == (5, 200, 300)
    assert (a2.requests, a2.tokens_used, a2.tokens_saved) == (4, 560, 280)
    assert (a3.requests, a3.tokens_used, a3.tokens_saved) == (2, 30, 0)
    assert dict(summary.routing) == {
        ("auto", "gpt-4o-mini", "default"): 3,
        ("auto", "gpt-4.1", "rule:creative-architecture"): 1,
        ("auto", "gpt-4.1-mini", "rule:refactor-qa-test"): 3,
        ("gpt-4o-mini", "gpt-4o-mini", "requested"): 1,
        ("text-embedding-3-small", "text-embedding-3-small", "requested"): 1,
    }


def test_sprint_and_time_filters() -> None:
    s2 = load(Selection(sprint="s2"))
    assert (s2.requests, s2.hits, s2.misses, s2.tokens_used) == (2, 0, 2, 30)
    assert s2.kpis()["token_reduction"] == 0.0 and s2.kpis()["batch_efficiency"] is None
    later = load(Selection(since=START + 45, until=START + 90))
    assert later.requests == 4  # r8 r9 r10 r11
    assert later.uptime["gateway"] == pytest.approx((67.5 - 45 + 90 - 80) / 45)


def test_cli_renders_table_markdown_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["report", "--ledger", str(FIXTURE), *args])
        assert exit_.value.code == 0
        return capsys.readouterr().out

    table = run()
    assert "Cache hit rate" in table and "22.2 %" in table and "> 40.0 %" in table
    lines = {line.split()[0]: line for line in table.splitlines() if line.startswith(("P95", "Batch"))}
    assert lines["P95"].endswith("FAIL") and lines["Batch"].endswith("PASS")
    assert "Baseline: the same requests with no cache" in table
    markdown = run("--format", "markdown", "--sprint", "s1")
    assert "| Token reduction |" in markdown and markdown.startswith("# Ledger report")
    data = orjson.loads(run("--format", "json", "--since", "2030-01-01T10:00:45"))
    assert data["requests"]["total"] == 5 and data["tokens"]["used"] == 30  # r8 to r12
    assert {k["name"]: k["met"] for k in data["kpis"]}["p95_latency_ms"] is False


def test_bad_arguments_and_missing_ledgers_exit_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args, status in ((["--since", "yesterday"], 2), (["--ledger", str(tmp_path / "none.jsonl")], 1)):
        with pytest.raises(SystemExit) as exit_:
            main(["report", *args])
        assert exit_.value.code == status
        assert capsys.readouterr().err.startswith("llm-gateway report: ")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_waits_elsewhere() -> None:
    now = [0.0]
    tty = Terminal()
    bar = Progress("reading", 200, stream=tty, clock=lambda: now[0])
    bar.advance(100)
    now[0] = 1.0
    bar.advance(100)
    bar.finish()
    assert "\rreading [###############---------------]  50.0 %" in tty.getvalue()
    assert tty.getvalue().endswith("100.0 % (1 s)\n")
    pipe = io.StringIO()
    quiet = Progress("reading", 10, stream=pipe, clock=lambda: now[0])
    quiet.advance(10)
    quiet.finish()
    assert pipe.getvalue() == "", "a short read prints nothing off a terminal"
