"""The ``llm-gateway`` command: serve, autoscale, check-config, report, replay.

A bad policy prints one line naming the file, key and problem, and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from gateway.policy import ConfigError, Policy, default_policy_path, load_policy
from gateway.providers import missing_package
from gateway.reporting import commands as reporting
from gateway.supervisor import WORKER_ENV
from gateway.telemetry import missing_package as missing_telemetry

CONFIG_HELP = "policy file (default: $GATEWAY_CONFIG or policies/default.yaml)"


def package_version() -> str:
    try:
        return version("llm-gateway")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
        return "unknown"


def subcommand(commands: Any, name: str, short: str, sentence: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand listed as ``short``, whose ``--help`` starts with ``sentence`` and ends with
    ``examples`` (one command a line)."""
    lines = [line.strip() for line in examples.strip().splitlines()]
    return commands.add_parser(  # type: ignore[no-any-return]
        name,
        help=short,
        description=sentence,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="llm-gateway",
        description="OpenAI-compatible gateway for agent fleets: caching, routing, batching, token budgets.",
        epilog="Run 'llm-gateway COMMAND --help' for a command's options and examples.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = subcommand(
        commands,
        "serve",
        "run the gateway",
        "Run the gateway; clients point OPENAI_BASE_URL at http://HOST:PORT/v1.",
        """
        llm-gateway serve
        OPENAI_API_KEY=sk-... llm-gateway serve --config policies/default.yaml --port 8080
        REDIS_URL=redis://localhost:6379/0 llm-gateway serve --workers 4
        """,
    )
    serve.add_argument("--config", help=CONFIG_HELP)
    serve.add_argument("--host", help="listen address (default: server.host, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port, 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers, 1)")
    scale = subcommand(
        commands,
        "autoscale",
        "run the autoscaler sidecar",
        "Run the autoscaler sidecar, which scales agents on the length of the task stream.",
        "REDIS_URL=redis://localhost:6379/0 llm-gateway autoscale --config policies/default.yaml",
    )
    scale.add_argument("--config", help=CONFIG_HELP)
    check = subcommand(
        commands,
        "check-config",
        "validate a policy file and exit",
        "Validate a policy file and exit: status 0 when it is good, 2 with the key at fault when not.",
        "llm-gateway check-config policies/default.yaml",
    )
    check.add_argument("file", help="policy file")
    reporting.add(commands, subcommand, CONFIG_HELP)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "check-config":
        policy = _load(Path(args.file), runnable=True)
        store = "redis" if policy.store.url else "memory"
        print(
            f"ok: {args.file}: {len(policy.providers)} providers, {len(policy.models)} models, store {store}"
        )
        sys.exit(0)
    path = Path(args.config) if args.config else default_policy_path()
    policy = _load(path, args.command == "serve")
    if args.command == "autoscale":
        from gateway.autoscaler.runner import run

        sys.exit(run(policy))
    if args.command in ("report", "replay"):
        sys.exit(reporting.run(args, policy))
    sys.exit(_serve(policy, path, args))


def _load(path: Path, runnable: bool = False) -> Policy:
    """The policy, or one line and exit 2; ``runnable`` also needs every provider's packages installed."""
    try:
        policy = load_policy(path)
        for name, provider in policy.providers.items() if runnable else ():
            problem = missing_package(provider)
            if problem:
                raise ConfigError(str(path), f"providers.{name}.type", problem)
        if runnable and (problem := missing_telemetry(policy.telemetry)):
            raise ConfigError(str(path), "telemetry.otlp", problem)
    except ConfigError as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    return policy


def _serve(policy: Policy, path: Path, args: argparse.Namespace) -> int:
    host = args.host or policy.server.host
    port = args.port if args.port is not None else policy.server.port
    workers = args.workers or policy.server.workers
    if workers < 1:
        print("llm-gateway: --workers must be at least 1", file=sys.stderr)
        return 2
    if workers > 1 and not policy.store.url:
        print(
            "llm-gateway: --workers above 1 needs a shared store (set REDIS_URL or store.url): "
            "with the in-process memory store each worker would keep its own cache and budgets",
            file=sys.stderr,
        )
        return 2
    worker = bool(os.environ.get(WORKER_ENV))
    if not worker:  # once per gateway, not once per worker
        from gateway import logs
        from gateway.startup import announce

        logs.configure(policy.logging.level, policy.logging.format)
        announce(policy, str(path.resolve()), host, port, logs.get_logger("gateway.cli"))
    if workers > 1:
        from gateway.supervisor import supervise

        return supervise(sys.argv[1:], workers)
    from gateway.worker import run_worker

    return run_worker(policy, host, port, reuse_port=worker)


if __name__ == "__main__":
    main()
