"""The ``llm-gateway`` command: serve, autoscale, check-config, report, replay.

A bad policy prints one line naming the file, key and problem, and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.policy import ConfigError, Policy, default_policy_path, load_policy
from gateway.providers import missing_package
from gateway.reporting import commands as reporting
from gateway.supervisor import WORKER_ENV


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="llm-gateway", description="OpenAI-compatible gateway for agent fleets."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="policy file (default: $GATEWAY_CONFIG or policies/default.yaml)")
    serve.add_argument("--host", help="listen address (default: server.host, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port, 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers, 1)")
    scale = commands.add_parser("autoscale", help="run the autoscaler sidecar")
    scale.add_argument("--config", help="policy file (default: $GATEWAY_CONFIG or policies/default.yaml)")
    check = commands.add_parser("check-config", help="validate a policy file and exit")
    check.add_argument("file", help="policy file")
    reporting.add(commands)
    args = parser.parse_args(argv)

    if args.command == "check-config":
        policy = _load(Path(args.file), runnable=True)
        store = "redis" if policy.store.url else "memory"
        print(
            f"ok: {args.file}: {len(policy.providers)} providers, {len(policy.models)} models, store {store}"
        )
        sys.exit(0)
    policy = _load(Path(args.config) if args.config else default_policy_path(), args.command == "serve")
    if args.command == "autoscale":
        from gateway.autoscaler.runner import run

        sys.exit(run(policy))
    if args.command in ("report", "replay"):
        sys.exit(reporting.run(args, policy))
    sys.exit(_serve(policy, args))


def _load(path: Path, runnable: bool = False) -> Policy:
    """The policy, or one line and exit 2; ``runnable`` also needs every provider's packages installed."""
    try:
        policy = load_policy(path)
        for name, provider in policy.providers.items() if runnable else ():
            problem = missing_package(provider)
            if problem:
                raise ConfigError(str(path), f"providers.{name}.type", problem)
    except ConfigError as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    return policy


def _serve(policy: Policy, args: argparse.Namespace) -> int:
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
    if workers > 1:
        from gateway.supervisor import supervise

        return supervise(sys.argv[1:], workers)
    from gateway.worker import run_worker

    return run_worker(policy, host, port, reuse_port=bool(os.environ.get(WORKER_ENV)))


if __name__ == "__main__":
    main()
