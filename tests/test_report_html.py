"""``llm-gateway report --format html``: one self-contained page whose charts hold the ledger's numbers,
checked in the written markup and, after layout, in headless Chromium (its DOM and its screenshot).

The ledger: three days (2030-01-01 to 03), agents ``a1`` and one whose name is markup, two models, two
sprints: ``s1`` (weekly, 1,000 tokens, alert at 80 %) and ``s2`` (daily, 500 tokens, alert at 50 %,
block at 90 %), so ``s2``'s burn-down counts only its last day.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest
import yaml
from PIL import Image
from prometheus_client import REGISTRY

from gateway.cli import main
from gateway.ledger.schema import LedgerRecord
from gateway.policy import Policy
from gateway.reporting import html, report, series
from gateway.reporting.kpis import percentile
from gateway.reporting.render import Table
from gateway.reporting.source import Selection, parse_time
from tests.test_budget import manager, request, spend, sprint

EVIL = '<img src=x onerror="alert(1)">&amp;'
EVIL_KEY = '"><script>alert(2)</script>'
D0, D1, D2 = (parse_time(f"2030-01-0{d}T00:00:00Z") for d in (1, 2, 3))
ELEMENTS = {
    *("html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "div", "figure"),
    *("svg", "rect", "line", "polyline", "circle", "text", "ul", "li", "span"),
    *("table", "thead", "tbody", "tr", "th", "td"),
}
"""Everything the page may hold: nothing that loads or runs anything."""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# (arrival, agent, model, cache, tokens used, tokens saved by the cache, cost, latency ms, sprint, hash)
ROWS: list[tuple[float, str, str, str, int, int, float, float, str, str]] = [
    (D0 + 3600, "a1", "gpt-4o-mini", "MISS", 100, 0, 0.001, 200, "s1", "k-alpha"),
    (D0 + 7200, EVIL, "gpt-4.1", "MISS", 300, 0, 0.01, 400, "s1", "k-beta"),
    (D0 + 7300, "a1", "gpt-4o-mini", "HIT", 0, 100, 0.0, 5, "s1", "k-alpha"),
    (D1 + 100, "a1", "gpt-4.1", "MISS", 250, 0, 0.008, 900, "s1", "k-gamma"),
    (D1 + 200, EVIL, "gpt-4o-mini", "HIT", 0, 100, 0.0, 4, "s1", "k-alpha"),
    (D1 + 500, "a1", "gpt-4o-mini", "MISS", 70, 0, 0.0007, 100, "s2", "k-eps"),
    (D2 + 36000, "a1", "gpt-4o-mini", "MISS", 120, 0, 0.0012, 300, "s2", EVIL_KEY),
    (D2 + 36010, EVIL, "gpt-4o-mini", "MISS", 80, 0, 0.0008, 350, "s2", EVIL_KEY),
]
SPRINTS = [
    {"id": "s1", "start": "2030-01-01T00:00:00Z", "every": "7d", "total_tokens": 1000, "agents": 2},
    {
        "id": "s2",
        "start": "2030-01-01T00:00:00Z",
        "every": "1d",
        "total_tokens": 500,
        "agents": 2,
        "alert_at": 0.5,
        "block_at": 0.9,
    },
]


def day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def ledger(path: Path) -> Path:
    lines = []
    for i, (ts, agent, model, cache, used, saved, cost, latency, sprint_id, key) in enumerate(ROWS):
        record = LedgerRecord(
            request_id=f"r{i}",
            endpoint="chat.completions",
            status=200,
            arrival=ts,
            latency_ms=latency,
            agent=agent,
            sprint=sprint_id,
            requested_model=model,
            model=model,
            rule="requested",
            cache=cache,
            content_key=key,
            tokens_used=used,
            tokens_saved=saved or None,
            saved_reason="cache" if saved else None,
            cost_usd=cost,
            baseline_cost_usd=cost or 0.001,
        )
        lines.append(orjson.dumps(record.to_record()))
    refused = LedgerRecord(
        "r-refused", "chat.completions", 429, D2 + 36020, 2, error="budget_exceeded", agent="a1", sprint="s1"
    )
    lines.append(orjson.dumps(refused.to_record()))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report as ``llm-gateway report --format html --output FILE`` writes it."""
    folder = tmp_path_factory.mktemp("html")
    policy = folder / "policy.yaml"
    policy.write_text(yaml.safe_dump({"budgets": {"sprints": SPRINTS}}))
    out = folder / "report.html"
    args = ["report", "--config", str(policy), "--ledger", str(ledger(folder / "ledger.jsonl"))]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--format", "html", "--output", str(out)])
    assert exit_.value.code == 0
    return out


class Charts(HTMLParser):
    """The figures in a page: per chart, its marks' (series, x, value) and its reference lines; the
    rows of each ``data-table``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.marks: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
        self.refs: dict[str, dict[str, float]] = defaultdict(dict)
        self.tables: dict[str, list[list[str]]] = defaultdict(list)
        self.chart: str | None = None
        self.table: str | None = None
        self.body = False
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.attributes.update(a)
        if tag == "svg":
            self.chart = a["data-chart"]
        elif tag == "table":
            self.table = a.get("data-table")
        elif tag == "tbody":
            self.body = True
        elif tag == "tr" and self.table and self.body:
            self.tables[self.table].append([])
        elif self.chart and "data-ref" in a:
            self.refs[self.chart][a["data-ref"] or ""] = float(a["data-value"] or "nan")
        elif self.chart and "data-value" in a:
            self.marks[self.chart].append(
                (a["data-series"] or "", a["data-x"] or "", float(a["data-value"] or "nan"))
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.chart = None
        elif tag == "table":
            self.table, self.body = None, False

    def handle_data(self, data: str) -> None:
        if self.table and self.body and self.lasttag == "td":
            self.tables[self.table][-1].append(data)

    def values(self, chart: str) -> dict[tuple[str, str], float]:
        return {(s, x): v for s, x, v in self.marks[chart]}


def expected_by(field: int, what: int) -> dict[tuple[str, str], float]:
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for row in ROWS:
        sums[(str(row[field]), day(row[0]))] += row[what]
    return {key: value for key, value in sums.items() if value}


def check(page: Charts) -> None:
    """Every chart holds the figures computed here from ``ROWS``, independently of the report's code."""
    assert page.values("Tokens per day by agent") == pytest.approx(expected_by(1, 4))
    assert page.values("Tokens per day by model") == pytest.approx(expected_by(2, 4))
    assert page.values("Cost per day by agent") == pytest.approx(expected_by(1, 6))
    assert page.values("Cost per day by model") == pytest.approx(expected_by(2, 6))
    hits: dict[str, list[bool]] = defaultdict(list)
    latencies: dict[str, list[float]] = defaultdict(list)
    for row in ROWS:
        hits[day(row[0])].append(row[3] == "HIT")
        latencies[day(row[0])].append(row[7])
    rates = page.values("Cache hit rate per day")
    assert rates == pytest.approx({("Cache hit rate per day", d): sum(h) / len(h) for d, h in hits.items()})
    assert page.refs["Cache hit rate per day"] == {"target": 0.4}
    assert page.refs["Token reduction per day"] == {"target": 0.3}
    reduction = page.values("Token reduction per day")
    assert reduction[("Token reduction per day", day(D0))] == pytest.approx(1 - 400 / 500)
    latency = page.values("Latency percentiles per day")
    for d, values in latencies.items():
        assert latency[("P95", d)] == percentile(values, 0.95)
        assert latency[("P50", d)] == percentile(values, 0.5)
    assert page.refs["Latency percentiles per day"] == {"target": 500}
    s1 = [v for _, _, v in page.marks["burn-down s1"]]
    assert s1 == [0, 100, 400, 400, 650, 650, 650], "cumulative from the sprint's start, the 429 adds 0"
    assert page.refs["burn-down s1"] == {"alert": 800, "block": 1000}
    s2 = [v for _, _, v in page.marks["burn-down s2"]]
    assert s2 == [0, 120, 200], "the daily sprint's last period only"
    assert page.refs["burn-down s2"] == {"alert": 250, "block": 450, "budget": 500}
    prompts = page.tables["prompts"]
    assert [row[:3] for row in prompts] == [["k-alpha", "3", "2"], [EVIL_KEY, "2", "0"]]
    kpis = {row[0]: row[1:] for row in page.tables["kpis"]}
    assert kpis["Cache hit rate"] == ["25.0 %", "> 40.0 %", "FAIL"]  # 2 hits of 8 lookups


def test_the_charts_hold_the_ledgers_numbers(written: Path) -> None:
    check(Charts(written.read_text(encoding="utf-8")))


def test_the_page_is_self_contained_and_escapes_ledger_text(written: Path) -> None:
    text = written.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    page = Charts(text)
    assert page.tags <= ELEMENTS, page.tags - ELEMENTS
    assert not {a for a in page.attributes if a in ("src", "href", "srcset") or a.startswith("on")}
    assert "url(" not in text and "@import" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp;" in text
    assert "&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in text


def test_in_chromium_the_page_renders_and_its_dom_holds_the_numbers(written: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (.ci/run installs the Debian package chromium)")
        pytest.skip("chromium is not installed")
    shot = tmp_path / "report.png"
    dom = chromium("--dump-dom", written)
    check(Charts(dom))
    chromium(f"--screenshot={shot}", written)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20) or []
    inked = sum(n for n, rgb in colours if rgb != (255, 255, 255))
    assert len(colours) > 50 and inked > 0.03 * 1280 * 2000, "the screenshot is blank"
    first_series = (0x42, 0x69, 0xD0)
    assert sum(n for n, rgb in colours if rgb == first_series) > 500, "no bar of the first series drawn"


def chromium(option: str, page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--window-size=1280,2000",
                option,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode()


def test_output_file_errors_and_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ledger(tmp_path / "ledger.jsonl")
    missing = tmp_path / "none" / "report.html"
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--ledger", str(path), "--format", "html", "--output", str(missing)])
    assert exit_.value.code == 1 and "cannot write" in capsys.readouterr().err
    out = tmp_path / "report.html"
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--ledger", str(tmp_path / "absent.jsonl"), "--format", "html", "--output", str(out)])
    assert exit_.value.code == 1 and not out.exists(), "no file when the ledger cannot be read"
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--ledger", str(path), "--output", str(out)])
    assert exit_.value.code == 0 and out.read_text().startswith("Ledger report:")
    with pytest.raises(SystemExit) as exit_:
        main(["replay", str(path), "--config", "policies/default.yaml", "--format", "html"])
    assert exit_.value.code == 2, "the replay has no HTML form"


def test_an_empty_selection_still_gives_a_page(tmp_path: Path) -> None:
    out = io.StringIO()
    selection = Selection(since=parse_time("2031-01-01T00:00:00Z"))
    assert report.run(Policy(), str(ledger(tmp_path / "l.jsonl")), selection, "html", out) == 0
    page = out.getvalue()
    assert "No sprint of this policy has requests" in page and "No prompt was asked more than once" in page


def test_a_long_burn_down_keeps_its_last_value_and_bounds() -> None:
    points = [(float(i), i * 2) for i in range(5000)]
    kept = series.thin(points)
    assert len(kept) <= series.MAX_POINTS + 1
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert [p[1] for p in kept] == sorted(p[1] for p in kept)


def test_buckets_follow_the_span() -> None:
    assert series.bucket_size(3 * 3600) == (300, "5 minutes")
    assert series.bucket_size(40 * 3600) == (3600, "hour")
    assert series.bucket_size(30 * 86400) == (86400, "day")


async def test_the_budget_gauges_count_from_the_period_start() -> None:
    """``token_budget_used`` and ``token_budget_threshold`` (the dashboard's burn-down) after charges."""
    config = sprint(id="burn", alert_at=0.5, block_at=0.9)
    budget = manager(config)
    await spend(budget, request(), 300)
    await spend(budget, request("b"), 100)
    used = {a: REGISTRY.get_sample_value("token_budget_used", {"sprint": "burn", "agent": a}) for a in "ab"}
    assert used == {"a": 300, "b": 100}
    assert REGISTRY.get_sample_value("token_budget_used", {"sprint": "burn", "agent": "_sprint"}) == 400
    for kind, share in (("alert", 0.5), ("block", 0.9)):
        value = REGISTRY.get_sample_value("token_budget_threshold", {"sprint": "burn", "kind": kind})
        assert value == int(config.total_tokens * share)


def test_the_tables_given_follow_the_charts(tmp_path: Path) -> None:
    data, summary = report.load(str(ledger(tmp_path / "l.jsonl")), Policy(), Selection(), show_progress=False)
    extra = Table("Prices <per 1M tokens>", ["model", "input"], [["gpt-4o-mini", "$0.15"]])
    text = html.page("Ledger report", Policy(), data, summary, [*report.tables(summary), extra])
    assert "<h3>Prices &lt;per 1M tokens&gt;</h3>" in text and text.index("Prices") > text.index("Routing")
    assert text.index("KPIs against their targets") < text.index("Tokens per day by agent")
    assert Charts(text).tags <= ELEMENTS
