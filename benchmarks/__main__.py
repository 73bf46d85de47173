"""``python -m benchmarks``: measure the gateway against the direct upstream (and optionally LiteLLM)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType

from .processes import StartError
from .ratios import ratio_table
from .report import Report, render
from .run import Options, run
from .scenarios import SCENARIOS, UnknownScenario, available, get_scenario

SPRINT = "sprint"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Throughput, latency, added latency and RSS of the gateway against the direct upstream.",
    )
    parser.add_argument(
        "--scenario", action="append", help="scenario to run (repeatable; default: every available one)"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--seed", type=int, default=7, help="sprint: workload seed (default 7)")
    parser.add_argument("--requests", type=int, default=2200, help="sprint: requests (default 2200)")
    parser.add_argument(
        "--sprint-seconds", type=float, default=90.0, help="sprint: seconds the requests span (default 90)"
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each (default 2)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per measurement, interleaved across targets; shows the median (default 1)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fake upstream latency (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="gateway and LiteLLM workers (default 1)")
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="connections (repeatable; default: each scenario's own, 1 and 32)",
    )
    parser.add_argument(
        "--log-level",
        action="append",
        choices=["debug", "info", "warning", "error"],
        help="gateway logging.level per variant (repeatable; default: warning and info)",
    )
    parser.add_argument(
        "--store",
        action="append",
        choices=["memory", "redis", "cluster"],
        help="shared-store variant of every gateway target, measured side by side (repeatable; default: "
        "memory, or one Redis with several workers); cluster is a 3-master Redis Cluster on loopback",
    )
    parser.add_argument(
        "--tool",
        choices=["auto", "wrk", "aiohttp"],
        default="auto",
        help="load generator (default: wrk if on the PATH, else aiohttp)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: spare the CPUs)")
    parser.add_argument(
        "--compare",
        action="append",
        choices=["litellm", "portkey", "forwarder"],
        help="also measure this peer (repeatable): the LiteLLM proxy, the Portkey gateway, the bare "
        "aiohttp forwarder (the forwarder joins whenever a peer is compared)",
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy every gateway measurement into DIR and summarise the top functions",
    )
    return parser


def _list() -> None:
    from .sprint.run import DESCRIPTION

    print(f"{SPRINT:13} {DESCRIPTION}")
    for name, scenario in SCENARIOS.items():
        missing = scenario.missing()
        state = f" (unavailable: no {', '.join(missing)} section)" if missing else ""
        print(f"{name:13} {scenario.description}{state}")


def _sprint(args: argparse.Namespace) -> int:
    """The sprint scenario: a scripted workload with KPIs, not a throughput measurement."""
    from .sprint import kpis
    from .sprint.run import run_sprint
    from .sprint.workload import SprintShape

    shape = SprintShape(seed=args.seed, requests=args.requests, duration_s=args.sprint_seconds)
    measured = run_sprint(shape)
    print(kpis.render(measured))
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
    return 0


def _interrupt(signum: int, _: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C, so every child is stopped


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        _list()
        return 0
    if args.scenario and SPRINT in args.scenario:
        return _sprint(args)
    try:
        scenarios = [get_scenario(name) for name in args.scenario] if args.scenario else available()
    except UnknownScenario as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    options = Options(
        scenarios=scenarios,
        duration_s=args.duration,
        warmup_s=args.warmup,
        latency_ms=args.latency_ms,
        workers=args.workers,
        repeat=max(1, args.repeat),
        log_levels=args.log_level or ("warning", "info"),
        stores=args.store or (),
        concurrency=args.concurrency or (),
        tool=args.tool,
        wrk_threads=args.wrk_threads,
        compare_litellm="litellm" in (args.compare or ()),
        peers=[*dict.fromkeys(["forwarder", *args.compare] if args.compare else [])],
        profile_dir=args.profile,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell may start us with it ignored
        signal.signal(signum, _interrupt)
    report = Report()
    status = 0
    try:
        run(options, report)
    except KeyboardInterrupt:
        report.notes.append("interrupted: results are partial")
        status = 130
    except StartError as exc:
        report.notes.append(f"stopped: {exc}")
        status = 1
    print(render(report))
    if (ratios := ratio_table(report)) is not None:
        print(f"\nagainst the bare forwarder and the memory store (same run)\n{ratios}")
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
