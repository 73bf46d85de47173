"""Measurements and how they are shown: a table on stdout, a comparison with LiteLLM, and JSON.

Every gateway or LiteLLM figure is also given against the direct call to the fake upstream measured in the
same run at the same concurrency: "added" latency is the difference, ratios are target / direct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from .load import LoadResult

DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class Measurement:
    scenario: str
    target: str
    kind: str  # "direct", "gateway" or "litellm"
    result: LoadResult
    rss_mb: tuple[float, ...] = ()
    """Resident memory of each serving process right after the load."""
    upstream_requests: int | None = None
    """Requests the fake upstream received during the measurement (cache hits and batches show here)."""
    rps_runs: tuple[float, ...] = ()
    """Throughput of every run with ``--repeat`` (this measurement is the median one)."""
    tokens_used: float | None = None
    """Provider tokens the gateway was charged during the measurement (its ``tokens_used_total``)."""

    @property
    def tokens_per_request(self) -> float | None:
        if self.tokens_used is None or not self.result.requests:
            return None
        return self.tokens_used / self.result.requests


@dataclass(slots=True)
class Report:
    meta: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)
    """py-spy summaries by "scenario target c=N" (with --profile)."""

    def direct(self, m: Measurement) -> Measurement | None:
        for other in self.measurements:
            if (
                other.kind == DIRECT
                and other.scenario == m.scenario
                and other.result.concurrency == m.result.concurrency
            ):
                return other
        return None

    def derived(self, m: Measurement) -> dict[str, float | None]:
        """Added latency and ratios against the direct call of the same scenario and concurrency."""
        base = self.direct(m)
        r = m.result
        if base is None or m.kind == DIRECT:
            return {
                "added_p50_ms": None,
                "added_p99_ms": None,
                "rps_ratio": None,
                "p50_ratio": None,
                "p99_ratio": None,
            }
        b = base.result
        return {
            "added_p50_ms": r.p50_ms - b.p50_ms,
            "added_p99_ms": r.p99_ms - b.p99_ms,
            "rps_ratio": _ratio(r.rps, b.rps),
            "p50_ratio": _ratio(r.p50_ms, b.p50_ms),
            "p99_ratio": _ratio(r.p99_ms, b.p99_ms),
        }

    def as_json(self) -> dict[str, Any]:
        rows = []
        for m in self.measurements:
            rss = {
                "rss_mb_per_worker": [round(x, 1) for x in m.rss_mb],
                "rss_mb_max": round(max(m.rss_mb), 1) if m.rss_mb else None,
                "rss_mb_mean": round(fmean(m.rss_mb), 1) if m.rss_mb else None,
            }
            derived = {k: (round(v, 4) if v is not None else None) for k, v in self.derived(m).items()}
            rows.append(
                {
                    "scenario": m.scenario,
                    "target": m.target,
                    "kind": m.kind,
                    **m.result.as_dict(),
                    **derived,
                    **rss,
                    "upstream_requests": m.upstream_requests,
                    "tokens_used": m.tokens_used,
                    "rps_runs": [round(x, 1) for x in m.rps_runs],
                }
            )
        return {"meta": self.meta, "results": rows, "notes": self.notes, "profiles": self.profiles}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _per_request(m: Measurement) -> float | None:
    """Upstream calls per answered request: 1 when every request is relayed, less with cache or batching."""
    if m.upstream_requests is None or not m.result.requests:
        return None
    return m.upstream_requests / m.result.requests


def _num(value: float | None, digits: int = 3, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _rss(values: Sequence[float]) -> str:
    return f"{max(values):.0f}/{fmean(values):.0f}" if values else "-"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first two left-aligned (names), the rest right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def results_table(report: Report) -> str:
    headers = [
        "scenario",
        "target",
        "conc",
        "rps",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "+p50 ms",
        "+p99 ms",
        "rps/direct",
        "p50/direct",
        "p99/direct",
        "RSS MB max/mean",
        "up/req",
        "tok/req",
        "errors",
    ]
    rows = []
    for m in report.measurements:
        r, d = m.result, report.derived(m)
        ratios = [_num(d[key], 2, "x") for key in ("rps_ratio", "p50_ratio", "p99_ratio")]
        rows.append(
            [
                m.scenario,
                m.target,
                str(r.concurrency),
                f"{r.rps:,.0f}",
                _num(r.p50_ms),
                _num(r.p95_ms),
                _num(r.p99_ms),
                _num(d["added_p50_ms"]),
                _num(d["added_p99_ms"]),
                *ratios,
                _rss(m.rss_mb),
                _num(_per_request(m), 2),
                _num(m.tokens_per_request, 1),
                str(r.errors),
            ]
        )
    return render_table(headers, rows)


def litellm_table(report: Report) -> str | None:
    """Each gateway variant next to LiteLLM at the same scenario and concurrency; None without LiteLLM."""
    theirs = {(m.scenario, m.result.concurrency): m for m in report.measurements if m.kind == "litellm"}
    if not theirs:
        return None
    headers = [
        "scenario",
        "ours",
        "conc",
        "ours rps",
        "litellm rps",
        "ours/litellm rps",
        "ours +p50",
        "litellm +p50",
        "ours +p99",
        "litellm +p99",
        "ours RSS",
        "litellm RSS",
    ]
    rows = []
    for m in report.measurements:
        other = theirs.get((m.scenario, m.result.concurrency))
        if m.kind != "gateway" or other is None:
            continue
        ours_d, theirs_d = report.derived(m), report.derived(other)
        rows.append(
            [
                m.scenario,
                m.target,
                str(m.result.concurrency),
                f"{m.result.rps:,.0f}",
                f"{other.result.rps:,.0f}",
                _num(_ratio(m.result.rps, other.result.rps), 2, "x"),
                _num(ours_d["added_p50_ms"]),
                _num(theirs_d["added_p50_ms"]),
                _num(ours_d["added_p99_ms"]),
                _num(theirs_d["added_p99_ms"]),
                _rss(m.rss_mb),
                _rss(other.rss_mb),
            ]
        )
    return render_table(headers, rows)


def render(report: Report) -> str:
    meta = report.meta
    head = (
        f"load tool {meta.get('tool')}, {meta.get('duration_s')} s per measurement (median of "
        f"{meta.get('repeat')} by rps) after {meta.get('warmup_s')} s warm-up, upstream latency "
        f"{meta.get('latency_ms')} ms, "
        f"{meta.get('workers')} worker(s), {meta.get('cpus')} CPUs"
    )
    parts = [head, meta.get("targets_legend", ""), "", results_table(report)]
    comparison = litellm_table(report)
    if comparison:
        parts += [
            "",
            f"gateway vs LiteLLM proxy {meta.get('litellm_version')} (added = target - direct)",
            comparison,
        ]
    for label, summary in report.profiles.items():
        parts += ["", f"profile of {label} (numbers measured while sampling):", summary]
    if report.notes:
        parts += ["", *(f"note: {note}" for note in report.notes)]
    return "\n".join(parts)
