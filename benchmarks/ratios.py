"""The figures the performance goals are stated in, from one run: each gateway variant against the bare
forwarder (the floor for this design) and each shared-store variant against the memory store."""

from __future__ import annotations

import re

from .report import Measurement, Report, _num, _ratio, render_table

_STORE = re.compile(r",(redis|cluster)\]$")


def ratio_table(report: Report) -> str | None:
    """None unless the forwarder or a memory/shared-store pair was measured."""
    by_target = {(m.scenario, m.result.concurrency, m.target): m for m in report.measurements}
    rows = []
    for m in report.measurements:
        if m.kind != "gateway":
            continue
        key = (m.scenario, m.result.concurrency)
        floor = by_target.get((*key, "forwarder"))
        memory = by_target.get((*key, _STORE.sub(",memory]", m.target)))
        if floor is None and (memory is None or memory is m):
            continue
        rows.append(
            [
                m.scenario,
                m.target,
                str(m.result.concurrency),
                f"{m.result.rps:,.0f}",
                _share(m, floor),
                _num(m.result.p50_ms - floor.result.p50_ms) if floor else "-",
                _share(m, memory) if memory is not m else "-",
            ]
        )
    if not rows:
        return None
    headers = ["scenario", "target", "conc", "rps", "rps/forwarder", "p50-forwarder ms", "rps/memory"]
    return render_table(headers, rows)


def _share(m: Measurement, other: Measurement | None) -> str:
    if other is None:
        return "-"
    ratio = _ratio(m.result.rps, other.result.rps)
    return "-" if ratio is None else f"{100 * ratio:.0f} %"
