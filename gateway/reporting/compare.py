"""``llm-gateway replay``: the KPIs recorded traffic reached, beside those another policy would have
reached on the same traffic (the simulation is in ``replay.py``)."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import TextIO

import orjson

from gateway.ledger.schema import LedgerRecord
from gateway.policy import Policy
from gateway.reporting.kpis import TARGETS, Summary, summarize
from gateway.reporting.render import Table, count, pct, render, usd, verdict
from gateway.reporting.replay import simulate
from gateway.reporting.report import BASELINE_NOTE, as_json, goal_text, heading, kpi_text, load
from gateway.reporting.source import Selection

UPTIME_NOTE = (
    "Uptime comes from heartbeats: a policy does not change it, so both columns show the recorded one."
)
UNKNOWN_NOTE = (
    "{} requests refused when recorded would be admitted: their answers are unknown, so they are left out."
)


def replayed_summary(policy: Policy, records: list[LedgerRecord], recorded: Summary) -> Summary:
    outcomes = asyncio.run(simulate(policy, records))
    summary = summarize(outcomes, recorded.uptime)
    summary.start, summary.end = recorded.start, recorded.end
    return summary


def _pair(label: str, before: str, after: str) -> list[str]:
    return [label, before, after]


def tables(recorded: Summary, replayed: Summary) -> list[Table]:
    old, new = recorded.kpis(), replayed.kpis()
    kpis = Table(
        "KPIs against their targets",
        ["KPI", "recorded", "replayed", "target", "replayed result"],
        [
            [
                t.label,
                kpi_text(t, old[t.name]),
                kpi_text(t, new[t.name]),
                goal_text(t),
                verdict(t.met(new[t.name])),
            ]
            for t in TARGETS
        ],
        [UPTIME_NOTE] + ([UNKNOWN_NOTE.format(replayed.unknown)] if replayed.unknown else []),
    )
    figures = Table(
        "Tokens, cost and requests",
        ["", "recorded", "replayed"],
        [
            _pair("Tokens used", count(recorded.tokens_used), count(replayed.tokens_used)),
            _pair("Baseline tokens", count(recorded.baseline_tokens), count(replayed.baseline_tokens)),
            _pair("  saved by the cache", count(recorded.saved_cache), count(replayed.saved_cache)),
            _pair("  saved by batching", count(recorded.saved_batch), count(replayed.saved_batch)),
            _pair("Cost", usd(_cost(recorded)), usd(_cost(replayed))),
            _pair("Cost reduction", pct(recorded.cost_reduction), pct(replayed.cost_reduction)),
            _pair(
                "Cache hits / misses",
                f"{recorded.hits} / {recorded.misses}",
                f"{replayed.hits} / {replayed.misses}",
            ),
            _pair(
                "Batches (members)",
                f"{recorded.batches} ({recorded.batch_members})",
                f"{replayed.batches} ({replayed.batch_members})",
            ),
            _pair("Refused by the budget", count(recorded.refused_budget), count(replayed.refused_budget)),
            _pair("Answered", count(recorded.answered), count(replayed.answered)),
        ],
        [BASELINE_NOTE],
    )
    return [kpis, figures, _models(recorded, replayed), _agents(recorded, replayed)]


def _cost(summary: Summary) -> float | None:
    return summary.cost_usd if summary.priced else None


def _models(recorded: Summary, replayed: Summary) -> Table:
    before, after = _by_model(recorded), _by_model(replayed)
    names = sorted(set(before) | set(after), key=lambda m: -(after[m] + before[m]))
    return Table(
        "Routing: answered requests per model",
        ["model", "recorded", "replayed"],
        [[m, count(before[m]), count(after[m])] for m in names],
    )


def _by_model(summary: Summary) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (_, model, _), n in summary.routing.items():
        counts[model] += n
    return counts


def _agents(recorded: Summary, replayed: Summary) -> Table:
    names = sorted(set(recorded.agents) | set(replayed.agents))
    rows = []
    for name in names:
        before, after = recorded.agents.get(name), replayed.agents.get(name)
        rows.append(
            [name, count(before.tokens_used if before else 0), count(after.tokens_used if after else 0)]
        )
    return Table("Tokens used per agent", ["agent", "recorded", "replayed"], rows)


def run(policy: Policy, location: str, selection: Selection, fmt: str, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    data, recorded = load(location, policy, selection)
    replayed = replayed_summary(policy, data.records, recorded)
    if fmt == "json":
        body = {"source": data.source, "recorded": as_json(recorded), "replayed": as_json(replayed)}
        out.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(
            render(fmt, heading("What-if replay", data, recorded, selection), tables(recorded, replayed))
        )
    return 0
