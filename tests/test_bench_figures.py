"""The benchmark's derived figures: the RSS slope of a soak, and shares of the forwarder and memory store."""

from __future__ import annotations

from benchmarks.load import LoadResult
from benchmarks.ratios import ratio_table
from benchmarks.report import Measurement, Report
from benchmarks.soak import slope_mb_per_min


def test_slope_is_in_mb_per_minute_and_zero_when_flat() -> None:
    assert slope_mb_per_min([(60, 100.0), (120, 101.0), (180, 102.0)]) == 1.0
    assert slope_mb_per_min([(60, 100.0), (70, 100.0), (80, 100.0)]) == 0.0
    assert slope_mb_per_min([(60, 100.0)]) is None


def _m(target: str, kind: str, rps: float) -> Measurement:
    result = LoadResult("wrk", 32, 1.0, int(rps), 0, 1.0, 1.0, 1.0, 1.0, 1.0)
    return Measurement("cache-miss", target, kind, result, (), int(rps))


def test_ratio_table_gives_shares_of_the_forwarder_and_of_the_memory_store() -> None:
    report = Report()
    report.measurements += [
        _m("forwarder", "forwarder", 1000),
        _m("gateway[warning,memory]", "gateway", 600),
        _m("gateway[warning,redis]", "gateway", 450),
    ]
    table = ratio_table(report)
    assert table is not None
    memory_row, redis_row = table.splitlines()[2:]
    assert "60 %" in memory_row
    assert "45 %" in redis_row and "75 %" in redis_row
