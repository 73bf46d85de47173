"""``llm-gateway report --format html``: one self-contained page (inline CSS and SVG, no script, nothing
fetched) with the charts and the tables of the text report.

Charts: tokens and cost per day (or hour) by agent and by model, cache hit rate and token reduction over
time against their targets, each sprint's budget used since its start against its alert and block
lines, latency percentiles over time, and the most repeated prompts by hash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from operator import attrgetter

from gateway.policy import Policy
from gateway.reporting import series as figures
from gateway.reporting.kpis import TARGETS, AgentLine, Summary, percentile
from gateway.reporting.render import Table, count, ms, pct, usd
from gateway.reporting.source import LedgerData
from gateway.reporting.svg import OTHERS, Ref, Series, bars, lines

MAX_SERIES = 8
"""Agents or models charted one by one; the rest are summed as one grey series."""
TIME_FORMATS = {86400: "%Y-%m-%d", 3600: "%m-%d %H:00", 300: "%H:%M"}
GOALS = {t.name: t.goal for t in TARGETS}
BUDGET_NOTE = (
    "Provider tokens charged to the sprint since its period started (its latest period for a recurring "
    "sprint), against the policy's total_tokens and its alert_at and block_at shares. Adjustments made "
    "through the admin API are not in the ledger; records outside the report's --since/--until are left out."
)
STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1f2328}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:14px;margin:0 0 4px}.sub{color:#57606a;margin:0 0 16px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px 24px}
figure{margin:0;padding:8px 12px;border:1px solid #d0d7de;border-radius:6px}
svg{width:100%;height:auto;display:block}svg text{font-size:11px;fill:#57606a}
svg line.grid{stroke:#eaeef2;stroke-width:1}
.legend{list-style:none;padding:0;margin:4px 0 0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.legend .ref span{height:2px;vertical-align:middle}
table{border-collapse:collapse;margin:4px 0 8px}th,td{padding:3px 10px;border-bottom:1px solid #eaeef2;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.PASS{color:#1a7f37;font-weight:600}td.FAIL{color:#cf222e;font-weight:600}
.note{color:#57606a;font-size:12px;max-width:900px}code{font-size:12px}.empty{color:#57606a}
"""


def page(heading: str, policy: Policy, data: LedgerData, summary: Summary, shown: Sequence[Table]) -> str:
    """The whole HTML document: the charts, and ``shown``, the text report's tables (the KPIs first)."""
    line = figures.timeline(data.records)
    kpi_table, *other_tables = shown
    body = [
        f"<h1>{escape(heading)}</h1>",
        f'<p class="sub">Generated {escape(_when(datetime.now(UTC).timestamp()))}.</p>',
        _table(kpi_table, "kpis"),
        "<h2>Tokens and cost</h2>",
        _grid(_usage_charts(line)),
        "<h2>Cache and token reduction against their targets</h2>",
        _grid(_rate_charts(line)),
        "<h2>Budget burn-down per sprint</h2>",
        _grid(_burn_down_charts(figures.burn_downs(data.records, policy.budgets.sprints))),
        f'<p class="note">{escape(BUDGET_NOTE)}</p>',
        "<h2>Latency and the most repeated prompts</h2>",
        *_latency_and_prompts(line, figures.top_prompts(data.records)),
        "<h2>Details</h2>",
        *(_table(t) for t in other_tables),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(heading)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _usage_charts(line: figures.Timeline) -> list[str]:
    labels = [_bucket_label(line, start) for start in line.starts]
    charts = []
    for who in ("agent", "model"):
        for what, value, fmt in (
            ("Tokens", attrgetter("tokens_used"), whole),
            ("Cost", attrgetter("cost_usd"), usd),
        ):
            title = f"{what} per {line.unit} by {who}"
            lines_of = [s.agents if who == "agent" else s.models for s in line.summaries]
            charts.append(_figure(title, bars(title, labels, _stacked(lines_of, value), fmt)))
    return charts


def _stacked(per_bucket: Sequence[dict[str, AgentLine]], value: Callable[[AgentLine], float]) -> list[Series]:
    """One series per name, largest first; past ``MAX_SERIES`` the rest are one grey series."""
    totals: dict[str, float] = {}
    for bucket in per_bucket:
        for name, line in bucket.items():
            totals[name] = totals.get(name, 0.0) + value(line)
    names = sorted(totals, key=lambda n: (-totals[n], n))
    shown, rest = names[:MAX_SERIES], names[MAX_SERIES:]
    out = [Series(name, [value(b[name]) if name in b else None for b in per_bucket]) for name in shown]
    if rest:
        others = [sum(value(b[n]) for n in rest if n in b) for b in per_bucket]
        out.append(Series(f"{len(rest)} others", others, OTHERS))
    return out


def _rate_charts(line: figures.Timeline) -> list[str]:
    charts = []
    for name, title in (("hit_rate", "Cache hit rate"), ("token_reduction", "Token reduction")):
        title = f"{title} per {line.unit}"
        values = [s.kpis()[name] for s in line.summaries]
        ref = Ref(f"target {pct(GOALS[name])}", GOALS[name])
        chart = lines(title, line.starts, [Series(title, values)], _label(line), pct, [ref], top=1.0)
        charts.append(_figure(title, chart))
    return charts


def _latency_chart(line: figures.Timeline) -> str:
    title = f"Latency percentiles per {line.unit}"
    shares = (("P50", 0.5), ("P95", 0.95), ("P99", 0.99))
    series = [Series(n, [percentile(s.latencies, q) for s in line.summaries]) for n, q in shares]
    ref = Ref(f"P95 target {ms(GOALS['p95_latency_ms'])}", GOALS["p95_latency_ms"])
    return _figure(title, lines(title, line.starts, series, _label(line), ms, [ref]))


def _burn_down_charts(charts: Sequence[figures.BurnDown]) -> list[str]:
    if not charts:
        return ['<p class="empty">No sprint of this policy has requests in this period.</p>']
    out = []
    for chart in charts:
        sprint = chart.sprint
        total = sprint.total_tokens
        refs = [
            Ref(f"alert at {pct(sprint.alert_at)}", total * sprint.alert_at, "alert"),
            Ref(f"block at {pct(sprint.block_at)}", total * sprint.block_at, "block"),
        ]
        if sprint.block_at != 1:
            refs.append(Ref(f"budget {count(total)}", total, "budget"))
        xs = [x for x, _ in chart.points]
        used = Series("tokens used", [float(v) for _, v in chart.points])
        title = f"Sprint {sprint.id}: {count(chart.used)} of {count(total)} tokens used"
        span = (chart.start if chart.start is not None else xs[0], chart.end or xs[-1])
        period = f"{_when(chart.start, 'the first record')} to {_when(chart.end, 'no end')}"
        svg = lines(f"burn-down {sprint.id}", xs, [used], _moment, whole, refs, span=span)
        out.append(_figure(title, svg, period))
    return out


def _latency_and_prompts(line: figures.Timeline, prompts: Sequence[figures.Prompt]) -> list[str]:
    if not prompts:
        empty = '<p class="empty">No prompt was asked more than once in this period.</p>'
        return [_grid([_latency_chart(line)]), empty]
    labels = [p.key[:12] for p in prompts]
    chart = bars(
        "repeated prompts",
        labels,
        [
            Series("answered from the cache", [p.hits for p in prompts]),
            Series("sent to the provider", [p.requests - p.hits for p in prompts]),
        ],
        whole,
    )
    table = Table(
        "By hash of the answer-changing fields (messages, parameters), model and scope left out",
        ["prompt hash", "requests", "cache hits", "tokens used", "tokens saved", "agents"],
        [
            [
                p.key,
                count(p.requests),
                count(p.hits),
                count(p.tokens_used),
                count(p.tokens_saved),
                str(p.agents),
            ]
            for p in prompts
        ],
    )
    return [
        _grid([_latency_chart(line), _figure("Requests per repeated prompt", chart)]),
        _table(table, "prompts"),
    ]


def _figure(title: str, svg: str, caption: str = "") -> str:
    sub = f'<p class="note">{escape(caption)}</p>' if caption else ""
    return f"<figure><h3>{escape(title)}</h3>{sub}{svg}</figure>"


def _grid(items: Sequence[str]) -> str:
    return f'<div class="grid">{"".join(items)}</div>'


def _table(table: Table, name: str = "") -> str:
    """A report table; figures right-aligned, PASS/FAIL coloured."""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    rows = "".join(
        "<tr>" + "".join(_cell(cell, i) for i, cell in enumerate(row)) + "</tr>" for row in table.rows
    )
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in table.notes)
    attr = f' data-table="{escape(name)}"' if name else ""
    return (
        f"<h3>{escape(table.title)}</h3><table{attr}><thead><tr>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table>{notes}"
    )


def _cell(cell: str, column: int) -> str:
    figure = column and (cell[:1].isdigit() or cell[:1] == "$")
    kind = cell if cell in ("PASS", "FAIL") else ("n" if figure else "")
    attr = f' class="{kind}"' if kind else ""
    return f"<td{attr}>{escape(cell)}</td>"


def _label(line: figures.Timeline) -> Callable[[float], str]:
    return lambda ts: _bucket_label(line, ts)


def _bucket_label(line: figures.Timeline, ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(TIME_FORMATS[line.seconds])


def _moment(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%m-%d %H:%M")


def _when(ts: float | None, unset: str = "") -> str:
    return unset if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def whole(value: float) -> str:
    """A token figure (axis steps of tiny charts are rounded)."""
    return f"{value:,.0f}"
