"""``llm-gateway report``: the KPIs against their targets and what is behind them, from the ledger.

KPIs with value, target and pass/fail; the baseline spelled out (the same requests with no cache, no
batching and no routing) with tokens and cost saved; requests by outcome; tokens per agent; the
routing distribution; uptime per component.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from gateway.heartbeat import uptime
from gateway.policy import Policy
from gateway.pricing import PriceBook
from gateway.reporting import prices
from gateway.reporting.kpis import TARGETS, Summary, Target, summarize
from gateway.reporting.outcome import recorded
from gateway.reporting.render import Table, count, ms, pct, render, usd, verdict
from gateway.reporting.source import LedgerData, Selection, read_ledger

BASELINE_NOTE = (
    "Baseline: the same requests with no cache (a hit at the tokens of the answer it served), no batching "
    "(a batch member at its estimated cost alone) and no routing (priced at the requested model, or "
    "routing.baseline_model / the largest candidate for aliases), every input token at the full rate. "
    "Routing and the provider's prompt cache change the price, not the tokens."
)


def load(
    location: str, policy: Policy, selection: Selection, show_progress: bool = True
) -> tuple[LedgerData, Summary]:
    data = read_ledger(location, policy, selection, show_progress)
    period = data.period(selection)
    up = uptime(data.spans, *period) if period else {}
    summary = summarize((recorded(r) for r in data.records), up)
    if period:
        summary.start, summary.end = period
    return data, summary


def kpi_text(target: Target, value: float | None) -> str:
    return ms(value) if target.unit == "ms" else pct(value)


def goal_text(target: Target) -> str:
    sign = ">" if target.higher_is_better else "<"
    return f"{sign} {kpi_text(target, target.goal)}"


def when(ts: float | None) -> str:
    return "n/a" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def heading(title: str, data: LedgerData, summary: Summary, selection: Selection) -> str:
    scope = f", sprint {selection.sprint}" if selection.sprint else ""
    return (
        f"{title}: {data.source}{scope}, {when(summary.start)} to {when(summary.end)}, "
        f"{count(summary.requests)} requests"
    )


def savings_rows(summary: Summary) -> list[list[str]]:
    baseline = summary.baseline_tokens
    return [
        ["Tokens used", count(summary.tokens_used)],
        ["Baseline tokens", count(baseline)],
        ["  saved by the cache", count(summary.saved_cache)],
        ["  saved by batching", count(summary.saved_batch)],
        ["Cost", usd(summary.cost_usd if summary.priced else None)],
        ["Baseline cost", usd(summary.baseline_cost_usd if summary.priced else None)],
        ["Cost saved", usd(summary.baseline_cost_usd - summary.cost_usd if summary.priced else None)],
        ["Cost reduction", pct(summary.cost_reduction)],
        ["Priced requests", f"{count(summary.priced)} of {count(summary.answered)}"],
        ["Read from the provider's prompt cache", count(summary.cache_read_tokens)],
        ["  USD it saved", usd(summary.provider_cache_saved_usd if summary.cache_read_tokens else None)],
    ]


def request_rows(summary: Summary) -> list[list[str]]:
    return [
        ["Requests (all /v1)", count(summary.requests)],
        ["Model requests", count(summary.model_requests)],
        ["  answered", count(summary.answered)],
        ["  cache hits / misses / bypassed", f"{summary.hits} / {summary.misses} / {summary.bypassed}"],
        ["  batches (members)", f"{summary.batches} ({summary.batch_members})"],
        ["  refused by the budget", count(summary.refused_budget)],
        ["  other 4xx", count(summary.rejected)],
        ["  failed (5xx, cut off)", count(summary.failed)],
    ]


def tables(summary: Summary) -> list[Table]:
    kpis = summary.kpis()
    kpi_table = Table(
        "KPIs against their targets",
        ["KPI", "value", "target", "result"],
        [[t.label, kpi_text(t, kpis[t.name]), goal_text(t), verdict(t.met(kpis[t.name]))] for t in TARGETS],
    )
    total = sum(summary.routing.values()) or 1
    return [
        kpi_table,
        Table("Tokens and cost against the baseline", ["", "value"], savings_rows(summary), [BASELINE_NOTE]),
        Table("Requests", ["", "count"], request_rows(summary)),
        Table(
            "Tokens per agent",
            ["agent", "requests", "tokens used", "tokens saved", "cost"],
            [
                [name, count(a.requests), count(a.tokens_used), count(a.tokens_saved), usd(a.cost_usd)]
                for name, a in sorted(summary.agents.items(), key=lambda item: -item[1].tokens_used)
            ],
        ),
        Table(
            "Routing distribution (answered requests)",
            ["requested", "model", "reason", "requests", "share"],
            [
                [requested, model, rule, count(n), pct(n / total)]
                for (requested, model, rule), n in summary.routing.most_common()
            ],
        ),
        Table(
            "Uptime (heartbeats)",
            ["component", "uptime"],
            [[name, pct(value)] for name, value in sorted(summary.uptime.items())],
            [] if summary.uptime else ["No heartbeats in the ledger for this period."],
        ),
    ]


def as_json(summary: Summary) -> dict[str, Any]:
    kpis = summary.kpis()
    return {
        "period": {"start": summary.start, "end": summary.end},
        "kpis": [
            {
                "name": t.name,
                "label": t.label,
                "value": kpis[t.name],
                "target": t.goal,
                "higher_is_better": t.higher_is_better,
                "met": t.met(kpis[t.name]),
            }
            for t in TARGETS
        ],
        "tokens": {
            "used": summary.tokens_used,
            "baseline": summary.baseline_tokens,
            "saved_cache": summary.saved_cache,
            "saved_batch": summary.saved_batch,
            "saved_provider_cache": summary.cache_read_tokens,
        },
        "cost": {
            "usd": summary.cost_usd,
            "baseline_usd": summary.baseline_cost_usd,
            "reduction": summary.cost_reduction,
            "provider_cache_saved_usd": summary.provider_cache_saved_usd,
            "priced_requests": summary.priced,
        },
        "requests": {
            "total": summary.requests,
            "model": summary.model_requests,
            "answered": summary.answered,
            "hits": summary.hits,
            "misses": summary.misses,
            "bypassed": summary.bypassed,
            "batches": summary.batches,
            "batch_members": summary.batch_members,
            "refused_budget": summary.refused_budget,
            "rejected": summary.rejected,
            "failed": summary.failed,
            "unknown": summary.unknown,
        },
        "agents": {name: vars_of(a) for name, a in summary.agents.items()},
        "routing": [
            {"requested": r, "model": m, "reason": why, "requests": n}
            for (r, m, why), n in summary.routing.most_common()
        ],
        "uptime": summary.uptime,
    }


def vars_of(line: Any) -> dict[str, Any]:
    return {name: getattr(line, name) for name in line.__slots__}


def run(policy: Policy, location: str, selection: Selection, fmt: str, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    data, summary = load(location, policy, selection)
    book, models = PriceBook.from_policy(policy), prices.models_of(policy, summary)
    if fmt == "json":
        body = as_json(summary)
        body["source"], body["unreadable_lines"] = data.source, data.unreadable
        body["prices"] = prices.price_json(book, models)
        out.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        shown = [*tables(summary), prices.price_table(book, models)]
        title = heading("Ledger report", data, summary, selection)
        if fmt == "html":
            from gateway.reporting.html import page

            out.write(page(title, policy, data, summary, shown))
        else:
            out.write(render(fmt, title, shown))
    return 0
