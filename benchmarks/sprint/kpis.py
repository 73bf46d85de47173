"""The sprint's KPIs, measured independently (the callers' view and the provider's call log) and as the
gateway reports them (its ledger, read by ``llm-gateway report``), side by side with their differences.

Independent definitions:

- billed tokens: what the provider's call log shows it billed (prompt + completion), every call.
- token reduction: 1 - gateway billed / direct billed (the same requests, same times, same prompts).
- cost reduction: the same in USD, each call priced at its model with cached input at the cached rate.
- cache hit rate: requests for which no provider call carrying their task was made while they waited.
- batch efficiency: 1 - (tokens billed by batch calls and by the fallbacks of their unanswered tasks) /
  (what the direct side was billed for those tasks alone).
- added latency: a request's latency through the gateway minus the same request's latency direct.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.reporting.kpis import percentile

from .client import Seen

Call = dict[str, Any]


@dataclass(slots=True)
class Side:
    """What one side of the run produced."""

    seen: list[Seen]
    calls: list[Call]
    price: Callable[[str, int, int, int], float | None]
    reported: dict[str, Any] = field(default_factory=dict)
    """The gateway's ``llm-gateway report --format json`` (empty for the direct side)."""
    tokens_used_metric: float | None = None

    @property
    def billed(self) -> int:
        return sum(c["prompt_tokens"] + c["completion_tokens"] for c in self.calls)

    @property
    def cached(self) -> int:
        return sum(c["cached_tokens"] for c in self.calls)

    @property
    def cost(self) -> float:
        return sum(
            self.price(c["model"], c["prompt_tokens"], c["completion_tokens"], c["cached_tokens"]) or 0.0
            for c in self.calls
        )

    def p95(self) -> float | None:
        return percentile([s.latency_ms for s in self.seen if s.status == 200], 0.95)

    def wrong(self) -> int:
        return sum(1 for s in self.seen if not s.right)


def hit_rate(side: Side) -> float:
    """Share of requests that no provider call carrying their task was made for while they waited."""
    by_task: dict[str, list[Call]] = {}
    for call in side.calls:
        for task in call["tasks"]:
            by_task.setdefault(task, []).append(call)
    served = 0
    for s in side.seen:
        end = s.sent + s.latency_ms / 1000
        if not any(s.sent <= c["received"] <= end for c in by_task.get(s.request.task, [])):
            served += 1
    return served / len(side.seen) if side.seen else 0.0


def batch_efficiency(gateway: Side, direct: Side) -> tuple[float | None, int, int]:
    """(efficiency, tokens billed for the batched tasks, what they cost alone direct)."""
    alone: dict[str, int] = {}
    for call in direct.calls:
        if len(call["tasks"]) == 1:
            alone.setdefault(call["tasks"][0], call["prompt_tokens"] + call["completion_tokens"])
    singles: dict[str, list[Call]] = {}
    for call in gateway.calls:
        if len(call["tasks"]) == 1:
            singles.setdefault(call["tasks"][0], []).append(call)
    used = baseline = 0
    for call in gateway.calls:
        if len(call["tasks"]) < 2:
            continue
        used += call["prompt_tokens"] + call["completion_tokens"]
        for task in call["tasks"]:
            baseline += alone.get(task, 0)
            for single in singles.get(task, []):  # a fallback: the task sent alone right after
                if call["done"] <= single["received"] <= call["done"] + 2.0:
                    used += single["prompt_tokens"] + single["completion_tokens"]
    return (1 - used / baseline if baseline else None), used, baseline


def added(gateway: Side, direct: Side, keep: Callable[[Seen], bool]) -> list[float]:
    """Paired added latency (gateway - direct) of the requests ``keep`` selects."""
    pairs = zip(gateway.seen, direct.seen, strict=True)
    return [g.latency_ms - d.latency_ms for g, d in pairs if g.status == 200 and keep(g)]


def own_time(side: Side, keep: Callable[[Seen], bool]) -> list[float]:
    """The gateway's own time for requests answered by one single call of their own: latency minus
    that call's time at the provider."""
    singles: dict[str, list[Call]] = {}
    for call in side.calls:
        if len(call["tasks"]) == 1:
            singles.setdefault(call["tasks"][0], []).append(call)
    out = []
    for s in side.seen:
        if s.status != 200 or not keep(s):
            continue
        end = s.sent + s.latency_ms / 1000
        mine = [c for c in singles.get(s.request.task, []) if s.sent <= c["received"] <= end]
        if len(mine) == 1:
            out.append(s.latency_ms - (mine[0]["done"] - mine[0]["received"]) * 1000)
    return out


def _miss_unbatched(s: Seen) -> bool:
    return s.cache == "MISS" and not s.batch


def measure(gateway: Side, direct: Side) -> dict[str, Any]:
    """The independent figures and the gateway's reported ones, keyed by KPI."""
    efficiency, batch_used, batch_alone = batch_efficiency(gateway, direct)
    rep = {k["name"]: k["value"] for k in gateway.reported.get("kpis", [])}
    tokens = gateway.reported.get("tokens", {})
    cost = gateway.reported.get("cost", {})
    members = added(gateway, direct, lambda s: bool(s.batch))
    misses = added(gateway, direct, _miss_unbatched)
    return {
        "requests": len(gateway.seen),
        "wrong_answers": {"direct": direct.wrong(), "gateway": gateway.wrong()},
        "p95_ms": {"direct": direct.p95(), "gateway": gateway.p95(), "reported": rep.get("p95_latency_ms")},
        "p50_ms": {
            "direct": percentile([s.latency_ms for s in direct.seen], 0.5),
            "gateway": percentile([s.latency_ms for s in gateway.seen], 0.5),
        },
        "hit_rate": {
            "direct": hit_rate(direct),
            "gateway": hit_rate(gateway),
            "reported": rep.get("hit_rate"),
        },
        "exact_repeats": sum(1 for s in gateway.seen if s.request.kind != "new") / max(1, len(gateway.seen)),
        "token_reduction": {
            "gateway": 1 - gateway.billed / direct.billed if direct.billed else None,
            "reported": rep.get("token_reduction"),
        },
        "cost_reduction": {
            "gateway": 1 - gateway.cost / direct.cost if direct.cost else None,
            "reported": cost.get("reduction"),
        },
        "batch_efficiency": {
            "gateway": efficiency,
            "reported": rep.get("batch_efficiency"),
            "billed": batch_used,
            "alone": batch_alone,
        },
        "billed_tokens": {
            "direct": direct.billed,
            "gateway": gateway.billed,
            "reported": tokens.get("used"),
            "tokens_used_total": gateway.tokens_used_metric,
        },
        "cached_tokens": {
            "direct": direct.cached,
            "gateway": gateway.cached,
            "reported": tokens.get("saved_provider_cache"),
        },
        "cost_usd": {"direct": direct.cost, "gateway": gateway.cost, "reported": cost.get("usd")},
        "batches": sum(1 for c in gateway.calls if len(c["tasks"]) > 1),
        "batch_sizes": _sizes(gateway.calls),
        "added_ms": {
            "batch_members_p50": statistics.median(members) if members else None,
            "batch_members_p95": percentile(members, 0.95),
            "unbatched_miss_p50": statistics.median(misses) if misses else None,
            "unbatched_miss_p95": percentile(misses, 0.95),
            "all_p95": percentile(added(gateway, direct, lambda s: True), 0.95),
            "own_unbatched_miss_p50": percentile(own := own_time(gateway, _miss_unbatched), 0.5),
            "own_unbatched_miss_p95": percentile(own, 0.95),
            "reported_p95": rep.get("p95_added_ms"),
        },
    }


def _sizes(calls: list[Call]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for call in calls:
        if len(call["tasks"]) > 1:
            sizes[len(call["tasks"])] = sizes.get(len(call["tasks"]), 0) + 1
    return dict(sorted(sizes.items()))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f} %"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} ms"


def _diff(a: float | None, b: float | None, scale: float = 100, unit: str = " pt") -> str:
    return "-" if a is None or b is None else f"{(a - b) * scale:+.1f}{unit}"


def render(m: dict[str, Any]) -> str:
    """The KPI table: target, direct, gateway measured, gateway reported, reported - measured."""
    from benchmarks.report import render_table

    rows = [
        [
            "cost reduction",
            "-",
            "0",
            _pct(m["cost_reduction"]["gateway"]),
            _pct(m["cost_reduction"]["reported"]),
            _diff(m["cost_reduction"]["reported"], m["cost_reduction"]["gateway"]),
        ],
        [
            "token reduction",
            "> 30 %",
            "0",
            _pct(m["token_reduction"]["gateway"]),
            _pct(m["token_reduction"]["reported"]),
            _diff(m["token_reduction"]["reported"], m["token_reduction"]["gateway"]),
        ],
        [
            "cache hit rate",
            "> 40 %",
            _pct(m["hit_rate"]["direct"]),
            _pct(m["hit_rate"]["gateway"]),
            _pct(m["hit_rate"]["reported"]),
            _diff(m["hit_rate"]["reported"], m["hit_rate"]["gateway"]),
        ],
        [
            "batch efficiency",
            "> 50 %",
            "-",
            _pct(m["batch_efficiency"]["gateway"]),
            _pct(m["batch_efficiency"]["reported"]),
            _diff(m["batch_efficiency"]["reported"], m["batch_efficiency"]["gateway"]),
        ],
        [
            "P95 latency",
            "< 500 ms, <= direct",
            _ms(m["p95_ms"]["direct"]),
            _ms(m["p95_ms"]["gateway"]),
            _ms(m["p95_ms"]["reported"]),
            _diff(m["p95_ms"]["reported"], m["p95_ms"]["gateway"], 1, " ms"),
        ],
        [
            "wrong answers",
            "0",
            str(m["wrong_answers"]["direct"]),
            str(m["wrong_answers"]["gateway"]),
            "-",
            "-",
        ],
    ]
    table = render_table(
        ["KPI", "target", "direct", "gateway (measured)", "gateway (reported)", "reported - measured"], rows
    )
    b, a, c = m["billed_tokens"], m["added_ms"], m["cached_tokens"]
    lines = [
        f"sprint: {m['requests']} requests, exact repeats {_pct(m['exact_repeats'])}, "
        f"{m['batches']} batches by size {m['batch_sizes']}",
        "",
        table,
        "",
        f"tokens billed: direct {b['direct']:,}, gateway {b['gateway']:,}; the gateway charged "
        f"{b['reported'] if b['reported'] is not None else '-'} in its ledger and "
        f"{b['tokens_used_total'] if b['tokens_used_total'] is not None else '-'} in tokens_used_total",
        f"provider-cached input tokens: direct {c['direct']:,}, gateway {c['gateway']:,} "
        f"(reported {c['reported'] if c['reported'] is not None else '-'})",
        f"cost: direct ${m['cost_usd']['direct']:.4f}, gateway ${m['cost_usd']['gateway']:.4f}",
        f"added latency (gateway - direct, same request): batch members p50 {_ms(a['batch_members_p50'])} "
        f"p95 {_ms(a['batch_members_p95'])}; unbatched misses p50 {_ms(a['unbatched_miss_p50'])} "
        f"p95 {_ms(a['unbatched_miss_p95'])}; all p95 {_ms(a['all_p95'])}",
        f"gateway's own time (latency - its provider call) of unbatched misses: p50 "
        f"{_ms(a['own_unbatched_miss_p50'])} p95 {_ms(a['own_unbatched_miss_p95'])}; the gateway reports "
        f"P95 added {_ms(a['reported_p95'])}",
    ]
    return "\n".join(lines)
