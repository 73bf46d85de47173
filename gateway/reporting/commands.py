"""The ``report`` and ``replay`` subcommands: arguments, and errors turned into exit statuses.

Exit 0 on success, 1 when the ledger cannot be read or the output file cannot be written, 2 for a bad
argument.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.policy import Policy

FORMATS = ("table", "json", "markdown")
REPORT_FORMATS = (*FORMATS, "html")


def add(commands: Any, subcommand: Callable[..., argparse.ArgumentParser], config_help: str) -> None:
    """Declare both subcommands on the ``llm-gateway`` parser's subparsers (``subcommand`` adds one with
    its description and examples)."""
    report = subcommand(
        commands,
        "report",
        "the KPIs against their targets, from the ledger",
        "Show the KPIs against their targets, and the tokens, cost and prices behind them, "
        "from the request ledger.",
        """
        llm-gateway report --since 7d
        llm-gateway report --redis redis://localhost:6379/0 --sprint team-a --format markdown
        llm-gateway report --format html --output report.html
        """,
    )
    report.add_argument("--config", help=config_help)
    report.add_argument(
        "--ledger", help="ledger file or redis:// URL (default: the policy's store.url, else ledger.file)"
    )
    report.add_argument("--redis", metavar="URL", help="read the ledger stream from this Redis")
    report.add_argument("--output", metavar="FILE", help="write the report to this file (default: stdout)")
    _filters(report, REPORT_FORMATS)
    replay = subcommand(
        commands,
        "replay",
        "what-if: recorded traffic decided again under another policy",
        "What-if: decide the recorded traffic again under another policy, offline, and compare the KPIs.",
        "llm-gateway replay ~/.local/state/llm-gateway/ledger.jsonl --config try.yaml --since 7d",
    )
    replay.add_argument("ledger", help="ledger file or redis:// URL")
    replay.add_argument("--config", required=True, help="the policy to try")
    _filters(replay, FORMATS)


def _filters(parser: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    parser.add_argument("--sprint", metavar="ID", help="only requests of this sprint")
    parser.add_argument("--since", metavar="T", help="ISO 8601 time or a span ago (30m, 12h, 7d)")
    parser.add_argument("--until", metavar="T", help="ISO 8601 time or a span ago")
    parser.add_argument("--format", choices=formats, default="table")


def run(args: argparse.Namespace, policy: Policy) -> int:
    from gateway.logs import configure
    from gateway.reporting import compare, report
    from gateway.reporting.source import Selection, SourceError, default_location, parse_time

    name = f"llm-gateway {args.command}"
    try:
        selection = Selection(
            args.sprint,
            parse_time(args.since) if args.since else None,
            parse_time(args.until) if args.until else None,
        )
    except ValueError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    configure("error")  # the replayed budget stage would log its alerts; only the report goes to stdout
    location = args.ledger or getattr(args, "redis", None) or default_location(policy)
    command = report.run if args.command == "report" else compare.run
    output = getattr(args, "output", None)
    buffer = io.StringIO() if output else None
    try:
        status = command(policy, location, selection, args.format, buffer)
    except SourceError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    if output and buffer is not None:  # written once complete: a failed read leaves no half file
        try:
            Path(output).write_text(buffer.getvalue(), encoding="utf-8")
        except OSError as exc:
            print(f"{name}: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return status
